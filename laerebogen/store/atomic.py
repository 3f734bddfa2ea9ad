"""Atomic file writes: readers of a run see a file's old content or its new one, never half."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A handle whose file replaces ``path`` when the block ends, so that readers see the old
    file or the new one, never half. On an error ``path`` stays as it was and the temporary
    file goes: a failed export or shard leaves nothing behind to clean up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`); returns ``path``."""
    with atomic_file(path) as handle:
        handle.write(data)
    return path


def atomic_lines(path: Path, lines: Iterable[bytes]) -> Path:
    """Stream ``lines`` into ``path`` atomically (see :func:`atomic_file`); returns ``path``."""
    with atomic_file(path) as handle:
        for line in lines:
            handle.write(line)
            handle.write(b"\n")
    return path


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
