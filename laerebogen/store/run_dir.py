"""The run directory: where each step's shards, merged set and state live, and the driver's
lock. The only code, with the rest of :mod:`laerebogen.store`, that writes files of a run.

Layout of a run::

    <run>/config.toml                              resolved configuration
    <run>/<step>/inputs/shard-00007.msgpack.zst   a shard's input records (written whole)
    <run>/<step>/shard-00007.msgpack.zst          output records, appended chunk by chunk
    <run>/<step>/shard-00007.rejects.msgpack.zst  rejections with reason codes
    <run>/<step>/shard-00007.journal              commit log while the shard is being written
    <run>/<step>/shard-00007.manifest.json        counts and sha256 of each file, written last
    <run>/<step>/merged/shard-00000.*             the step's merged set, written by the merge job
    <run>/<step>/*.json                           state of the step (plan, jobs, merge result)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import msgspec

from laerebogen.errors import CorruptShardError, StoreError
from laerebogen.records import Example, Rejection
from laerebogen.store.atomic import atomic_write
from laerebogen.store.shards import (
    COMPRESSION_LEVEL,
    MANIFEST_SUFFIX,
    LiveProgress,
    ShardManifest,
    ShardPaths,
    ShardProgress,
    ShardWriter,
    load_manifest,
    read_live,
    read_verified,
    shard_progress,
    verify_file,
    write_whole_shard,
)

T = TypeVar("T", bound=msgspec.Struct)
STEP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# The file a run's driver holds its lock on (see :meth:`RunStore.driver_lock`).
DRIVER_LOCK = "driver.lock"


class RunStore:
    """Owns a run directory: where every shard, manifest and run-level file lives."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def step_dir(self, step: str) -> Path:
        """The folder of ``step``; step names are lowercase slugs."""
        if not STEP_NAME.fullmatch(step):
            raise StoreError(f"invalid step name {step!r} (use a-z, 0-9, '-' and '_')")
        return self.root / step

    def output_paths(self, step: str, index: int) -> ShardPaths:
        """Files of output shard ``index`` of ``step``."""
        return ShardPaths(self.step_dir(step), index)

    def input_paths(self, step: str, index: int) -> ShardPaths:
        """Files of input shard ``index`` of ``step``."""
        return ShardPaths(self.step_dir(step) / "inputs", index)

    # -- output shards

    def open_shard(self, step: str, index: int, *, level: int = COMPRESSION_LEVEL) -> ShardWriter:
        """A resumable writer for output shard ``index`` of ``step``."""
        return ShardWriter(self.output_paths(step, index), step, level=level)

    def is_done(self, step: str, index: int) -> bool:
        """Whether output shard ``index`` of ``step`` has its manifest."""
        return self.output_paths(step, index).manifest.exists()

    def manifest(self, step: str, index: int) -> ShardManifest:
        """The manifest of a finished output shard."""
        paths = self.output_paths(step, index)
        manifest = load_manifest(paths)
        if manifest is None:
            raise StoreError(f"{paths.data}: shard is not finished (no {paths.manifest.name})")
        return manifest

    def done_shards(self, step: str) -> list[int]:
        """Indices of the finished output shards of ``step``, sorted."""
        directory = self.step_dir(step)
        return sorted(
            ShardPaths.of_file(path).index for path in directory.glob(f"shard-*{MANIFEST_SUFFIX}")
        )

    def merged_paths(self, step: str) -> ShardPaths:
        """Files of the merged set of ``step`` (kept records and the merge's rejections)."""
        return ShardPaths(self.step_dir(step) / "merged", 0)

    def open_merged(self, step: str) -> ShardWriter:
        """A resumable writer for the merged set of ``step``."""
        return ShardWriter(self.merged_paths(step), step)

    def merged_manifest(self, step: str) -> ShardManifest | None:
        """The manifest of the merged set of ``step``, or None before the merge finished."""
        return load_manifest(self.merged_paths(step))

    def read_merged(self, step: str) -> Iterator[Example]:
        """The verified records of the merged set of ``step``."""
        return read_verified(self.merged_paths(step), "data", Example)

    def read_merge_rejects(self, step: str) -> Iterator[Rejection]:
        """The verified rejections of the merge of ``step``."""
        return read_verified(self.merged_paths(step), "rejects", Rejection)

    def progress(self, step: str, index: int) -> ShardProgress:
        """How far output shard ``index`` got (see :func:`shard_progress`)."""
        return shard_progress(self.output_paths(step, index))

    def live(self, step: str, index: int) -> LiveProgress | None:
        """What an unfinished output shard last said it was doing (see :func:`read_live`)."""
        return read_live(self.output_paths(step, index))

    def read_records(self, step: str, index: int) -> Iterator[Example]:
        """The verified output records of a finished shard."""
        return read_verified(self.output_paths(step, index), "data", Example)

    def read_rejects(self, step: str, index: int) -> Iterator[Rejection]:
        """The verified rejections of a finished shard."""
        return read_verified(self.output_paths(step, index), "rejects", Rejection)

    def write_inputs(
        self, step: str, index: int, records: Iterable[Example], *, level: int = COMPRESSION_LEVEL
    ) -> ShardManifest:
        """Write input shard ``index`` of ``step`` whole (see :func:`write_whole_shard`)."""
        return write_whole_shard(self.input_paths(step, index), step, records, level=level)

    def read_inputs(self, step: str, index: int) -> Iterator[Example]:
        """The verified records of input shard ``index`` of ``step``."""
        return read_verified(self.input_paths(step, index), "data", Example)

    # -- run-level files

    def write_text(self, relative: str, text: str) -> Path:
        """Atomically write a run-level text file (config, state, reports)."""
        path = self.root / relative
        atomic_write(path, text.encode("utf-8"))
        return path

    def write_state(self, relative: str, state: msgspec.Struct) -> Path:
        """Atomically write a run-level state Struct as JSON (plans, jobs, merge results)."""
        path = self.root / relative
        atomic_write(path, msgspec.json.format(msgspec.json.encode(state)) + b"\n")
        return path

    def read_state(self, relative: str, kind: type[T]) -> T | None:
        """A state Struct written by :meth:`write_state`, or None when there is none yet."""
        try:
            raw = (self.root / relative).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.DecodeError as error:
            raise StoreError(f"{self.root / relative}: unreadable state ({error})") from None

    @contextlib.contextmanager
    def driver_lock(self) -> Iterator[bool]:
        """Hold the run's driver lock for the block; yields False where the file system has no
        locks. Another holder is a StoreError naming its host, pid and start.

        A POSIX record lock (``fcntl.lockf``): the kernel drops it when its process ends,
        however it ends, so a killed driver never leaves a stale lock; and unlike ``flock``
        it is honoured across the nodes of NFS (v4, or v3 with lockd) and of Lustre mounted
        with ``flock``, where runs of a cluster live.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / DRIVER_LOCK
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
                raise StoreError(
                    f"{self.root}: another driver is running this run "
                    f"({holder or 'holder unknown'}); let it finish or stop it first"
                ) from None
            except OSError:  # e.g. Lustre mounted without flock: ENOSYS/ENOLCK
                yield False
                return
            since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            holder = f"host {socket.gethostname()}, pid {os.getpid()}, since {since}\n"
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, holder.encode(), 0)
            try:
                yield True
            finally:
                os.ftruncate(descriptor, 0)
        finally:
            os.close(descriptor)  # releases the lock

    def read_text(self, relative: str) -> str | None:
        """A run-level text file, or None when it does not exist."""
        try:
            return (self.root / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def verify(self) -> Iterator[tuple[Path, str | None]]:
        """Every manifest of the run, with what is wrong with it or its files (None: each
        file has the size and sha256 its manifest lists). Reads every byte: run it when
        nothing writes."""
        for manifest_path in sorted(self.root.rglob(f"shard-*{MANIFEST_SUFFIX}")):
            paths = ShardPaths.of_file(manifest_path)
            try:
                manifest = load_manifest(paths)
                if manifest is None:
                    continue  # removed since it was listed
                for entry in manifest.files:
                    verify_file(paths, manifest, entry.name)
            except CorruptShardError as error:
                yield manifest_path, str(error)
            else:
                yield manifest_path, None
