"""The project's own promises: the README's quick start is what CI runs, and the package's
imports point one way."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from tests.support.paths import REPOSITORY


def quick_start_commands() -> list[str]:
    """The commands of the Quick start section's sh blocks, in order."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert blocks, "the Quick start section has no sh block"
    return [line for block in blocks for line in block.split("\n")[:-1]]


def test_quick_start_is_install_dataset_then_test() -> None:
    assert quick_start_commands() == ["make install", "make dataset", "make test"]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci = (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8")
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
        assert (REPOSITORY / name).exists(), name


def package_imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, including imports
    inside functions (``from laerebogen.x import y`` counts ``laerebogen.x.y`` when that is a
    module)."""
    package = REPOSITORY / "laerebogen"
    modules = {
        ".".join(path.relative_to(REPOSITORY).with_suffix("").parts).removesuffix(".__init__"): path
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


# The layers of the package, from the foundation up: a module imports only modules of its own
# layer or of layers below it (README, "Layout").
LAYERS = (
    ("laerebogen", "errors", "records", "chunking", "hashing", "log", "seeds", "config"),
    ("store", "filtering", "models", "codecheck", "sources", "decontamination"),
    ("inference",),
    ("stages",),
    ("launch",),
    ("pipeline",),
    ("outputs",),
    ("commands",),
    ("cli", "command_line", "__main__"),
)


def layer(module: str) -> int:
    """The layer of a package module, by its first name under ``laerebogen``."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "laerebogen"
    (rank,) = [rank for rank, names in enumerate(LAYERS) if top in names]
    return rank


def test_the_package_has_no_import_cycle() -> None:
    graph = package_imports()
    assert "laerebogen.commands.dataset" in graph["laerebogen.cli"]  # sees function imports
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_imports_point_from_the_foundation_up() -> None:
    wrong = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in package_imports().items()
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def importers(name: str) -> set[str]:
    """The package modules that import ``name`` or a module under it, anywhere in them."""
    found = set()
    for path in (REPOSITORY / "laerebogen").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(n == name or n.startswith(name + ".") for n in names):
                found.add(path.relative_to(REPOSITORY).as_posix())
    return found


def test_only_the_engine_imports_vllm_and_only_the_slurm_launcher_submitit() -> None:
    assert importers("vllm") == {"laerebogen/inference/engine.py"}
    assert importers("submitit") == {"laerebogen/launch/slurm.py"}


# Calls that create, change or delete files, and the places outside the store that may make
# them, with why (the store owns the run directory; models/ owns model directories).
WRITE_CALLS = {"write_text", "write_bytes", "unlink", "mkdir", "rmtree", "touch"}
OS_WRITE_CALLS = {"open", "replace", "rename", "remove"}  # as os.<name>
WRITERS = ("laerebogen/store/", "laerebogen/models/")
ALLOWED_WRITES = {
    ("laerebogen/launch/local.py", "mkdir"): "the folder of a local job's log (as submitit's)",
    ("laerebogen/launch/local_worker.py", "open"): "a local job's log",
    ("laerebogen/launch/local_worker.py", "fdopen"): "the report pipe to the launcher",
    ("laerebogen/commands/doctor.py", "mkdir"): "doctor's check that the run dir is writable",
    ("laerebogen/outputs/report.py", "unlink"): "a stale plot of an earlier report",
    ("laerebogen/outputs/publish.py", "unlink"): "the stale map of an earlier export",
    ("laerebogen/cli.py", "open"): "/dev/null as stdout once its reader went away",
    ("laerebogen/codecheck/harness.py", "fdopen"): "the result pipe to the sandbox's parent",
    ("laerebogen/codecheck/harness.py", "open"): "/dev/null as the checked code's stdio",
    ("laerebogen/codecheck/sandbox.py", "fdopen"): "the job pipe to the sandboxed process",
}


def file_writes(path: Path) -> set[str]:
    """The names of the file-writing calls in a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
        on_os = isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "os"
        if (
            name in WRITE_CALLS
            or (on_os and name in OS_WRITE_CALLS)
            or (name in {"open", "fdopen"} and modes and modes[0] != "rb")
        ):
            found.add(name)
    return found


def test_only_the_store_writes_files_of_a_run() -> None:
    unexpected = [
        f"{relative}: {call}"
        for path in sorted((REPOSITORY / "laerebogen").rglob("*.py"))
        if not (relative := path.relative_to(REPOSITORY).as_posix()).startswith(WRITERS)
        for call in sorted(file_writes(path))
        if (relative, call) not in ALLOWED_WRITES
    ]
    assert not unexpected, unexpected
    assert file_writes(REPOSITORY / "laerebogen/store/atomic.py")  # the check sees writes


def test_tests_mirror_the_package_and_share_helpers_only_through_support() -> None:
    """tests/<subpackage>/test_<module>.py tests laerebogen/<subpackage>/<module>.py, and a
    test file imports other test code only from tests/support/."""
    tests = REPOSITORY / "tests"
    for path in tests.rglob("test_*.py"):
        folder = path.parent.relative_to(tests)
        if folder.parts:  # a subpackage's tests are of its modules
            module = REPOSITORY / "laerebogen" / folder / f"{path.stem.removeprefix('test_')}.py"
            name = path.relative_to(REPOSITORY)
            assert module.is_file(), f"{name} tests no module of the package"
    for path in [*tests.rglob("*.py"), *(REPOSITORY / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests."):
                assert node.module.startswith("tests.support."), (path, node.module)
