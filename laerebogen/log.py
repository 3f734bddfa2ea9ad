"""Progress lines of jobs: one line to stderr, flushed, so that a job's log shows it at once."""

from __future__ import annotations

import sys
from collections.abc import Callable

# Where a job writes its progress lines (tests pass a list's append).
Log = Callable[[str], None]


def stderr_line(line: str) -> None:
    """Write ``line`` to stderr and flush it (SLURM and local logs are files, block-buffered)."""
    print(line, file=sys.stderr, flush=True)
