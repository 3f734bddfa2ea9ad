"""The command line as users run it: the installed console script and python -m laerebogen."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CONSOLE_SCRIPT = shutil.which("laerebogen", path=str(Path(sys.executable).parent))


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert CONSOLE_SCRIPT, "the laerebogen console script is not installed next to python"
    return subprocess.run(
        [CONSOLE_SCRIPT, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def laerebogen(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The CLI as users run it, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "laerebogen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sets(overrides: list[str]) -> list[str]:
    """``--set`` arguments for ``overrides``."""
    return [arg for override in overrides for arg in ("--set", override)]
