"""The project's own promises: the README's quick start is what CI runs, and the package's
imports point one way."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    """The commands of the Quick start section's sh blocks, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert blocks, "the Quick start section has no sh block"
    return [line for block in blocks for line in block.split("\n")[:-1]]


def test_quick_start_is_install_dataset_then_test() -> None:
    assert quick_start_commands() == ["make install", "make dataset", "make test"]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make install", "make test"]
    assert "set -euo pipefail" in ci


def test_layout_exists() -> None:
    for name in (
        "pyproject.toml",
        "laerebogen",
        "slurm",
        "containers",
        "seeds",
        "tests",
        "benchmarks",
        "README.md",
        "Makefile",
        ".ci/run",
    ):
        assert (ROOT / name).exists(), name


def package_imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, including imports
    inside functions (``from laerebogen.x import y`` counts ``laerebogen.x.y`` when that is a
    module)."""
    package = ROOT / "laerebogen"
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[module] = {target for target in targets if target in modules} - {module}
    return graph


def test_the_package_has_no_import_cycle() -> None:
    graph = package_imports()
    assert "laerebogen.driver" in graph["laerebogen.cli"]  # the graph sees function imports
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
