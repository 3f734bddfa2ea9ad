"""Atomic file writes: readers of a run see a file's old content or its new one, never half."""

from __future__ import annotations

import contextlib
import os
import shutil
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


class Folder:
    """A folder being built by :func:`atomic_directory`: nobody reads it yet, so its files are
    written plainly."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, data: bytes) -> Path:
        """Write the file ``relative`` (making its folders); returns its path."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Folder]:
    """A fresh folder whose content replaces the folder ``path`` when the block ends, so that
    a reader sees the old folder or the new one whole (or, between two renames, none), never
    a mix of both or a file that an older build with more files left behind. On an error
    ``path`` stays as it was.

    For folders of many files derived from a run (the browse page): the files are not synced
    one by one, only the folders; after a crash, build the folder again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    for leftover in (building, old):
        shutil.rmtree(leftover, ignore_errors=True)
    building.mkdir()
    try:
        yield Folder(building)
        for directory in (building, *(p for p in building.rglob("*") if p.is_dir())):
            _fsync_directory(directory)
        if path.exists():
            os.replace(path, old)
        os.replace(building, path)
        _fsync_directory(path.parent)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
