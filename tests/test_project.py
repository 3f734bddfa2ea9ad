"""The project's own promises: the README's quick start is what CI runs."""

from __future__ import annotations

import re
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
