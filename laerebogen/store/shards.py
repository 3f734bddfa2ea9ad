"""The shard format: record files, their commit journal and the manifest that finishes them.

Record files are sequences of zstd frames, one per chunk, each a msgpack array of records
(``zstd -dc`` shows them). A writer appends a chunk's frames, fsyncs them and then commits
the chunk by appending one line to the journal: a writer killed with SIGKILL loses at most
the chunk in progress, and a resumed writer truncates whatever was not committed and skips
exactly the inputs that committed chunks consumed. The manifest is the completion marker:
readers verify files against it and refuse a truncated or altered shard.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, TypeVar

import msgspec
import zstandard

from laerebogen.chunking import chunked
from laerebogen.errors import CorruptShardError, StoreError
from laerebogen.hashing import sha256_of_file
from laerebogen.records import Example, Rejection
from laerebogen.store.atomic import atomic_file, atomic_write

FORMAT_VERSION = 1
COMPRESSION_LEVEL = 3
INPUT_CHUNK_SIZE = 2000
_READ_BLOCK = 1 << 20
_DATA_SUFFIX = ".msgpack.zst"
_REJECTS_SUFFIX = ".rejects.msgpack.zst"
MANIFEST_SUFFIX = ".manifest.json"
T = TypeVar("T", bound=msgspec.Struct)


class FileDigest(msgspec.Struct, frozen=True):
    """Size, checksum and record count of one file of a shard."""

    name: str
    bytes: int
    sha256: str
    records: int


class ShardManifest(msgspec.Struct, frozen=True):
    """What a finished shard holds; its presence marks the shard as done."""

    step: str
    shard: int
    inputs: int
    outputs: int
    rejected: dict[str, int]
    files: tuple[FileDigest, ...]
    chunks: int
    wall_seconds: float
    prompt_tokens: int
    completion_tokens: int
    finished_at: str
    format: int = FORMAT_VERSION
    startup_seconds: float = 0.0  # of ``wall_seconds``: loading the model (the last process)
    requests: dict[str, int] = {}  # model requests by the stage's call (none in older shards)

    @property
    def rejected_total(self) -> int:
        """Number of rejections over all reasons."""
        return sum(self.rejected.values())


class ShardProgress(NamedTuple):
    """Committed progress of one output shard, for status displays."""

    done: bool
    inputs: int
    outputs: int
    rejected: int
    completion_tokens: int


class LiveProgress(msgspec.Struct, frozen=True):
    """What a working shard does between its commits, for progress displays only: its phase,
    and in the vLLM call under way the requests answered of those asked and their tokens
    (a stage without a model is only ``running``)."""

    phase: Literal["loading model", "generating", "running"]
    answered: int = 0
    asked: int = 0
    completion_tokens: int = 0


class _JournalEntry(msgspec.Struct, frozen=True):
    """One committed chunk: where its bytes end, their checksums and what it consumed."""

    inputs: tuple[str, ...]
    data_end: int
    data_sha256: str
    rejects_end: int
    rejects_sha256: str
    outputs: int
    rejected: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    requests: dict[str, int] = {}


class ShardPaths:
    """File names of shard ``index`` in ``directory``."""

    def __init__(self, directory: Path, index: int) -> None:
        if index < 0:
            raise ValueError(f"shard index must be >= 0, got {index}")
        stem = f"shard-{index:05d}"
        self.directory = directory
        self.index = index
        self.data = directory / f"{stem}{_DATA_SUFFIX}"
        self.rejects = directory / f"{stem}{_REJECTS_SUFFIX}"
        self.manifest = directory / f"{stem}{MANIFEST_SUFFIX}"
        self.journal = directory / f"{stem}.journal"
        self.live = directory / f"{stem}.live.json"

    @classmethod
    def of_file(cls, path: Path) -> ShardPaths:
        """The shard that a data, rejects or manifest file belongs to."""
        match = re.fullmatch(r"shard-(\d+)(\.rejects)?\.(msgpack\.zst|manifest\.json)", path.name)
        if match is None:
            raise StoreError(f"{path}: not a shard file (expected shard-NNNNN{_DATA_SUFFIX})")
        return cls(path.parent, int(match.group(1)))


def _sha256_of_range(path: Path, start: int, end: int) -> str | None:
    """The sha256 of bytes ``[start, end)`` of ``path``; None when the file is shorter."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                block = handle.read(min(_READ_BLOCK, remaining))
                if not block:
                    return None
                digest.update(block)
                remaining -= len(block)
    except FileNotFoundError:
        return None if end > start else digest.hexdigest()
    return digest.hexdigest()


def _truncate(path: Path, size: int) -> None:
    with open(path, "ab") as handle:
        handle.truncate(size)


class _FrameCodec:
    """Encodes a chunk of records as one zstd frame holding a msgpack array."""

    def __init__(self, level: int = COMPRESSION_LEVEL) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)

    def frame(self, records: Sequence[Any]) -> bytes:
        """One frame for a non-empty chunk; empty bytes for an empty one."""
        if not records:
            return b""
        return self._compressor.compress(self._encoder.encode(list(records)))


def iter_frames(path: Path) -> Iterator[bytes]:
    """Yield the decompressed frames of ``path`` one at a time, in constant memory."""
    decompressor = zstandard.ZstdDecompressor()
    stream = None
    parts: list[bytes] = []
    try:
        with open(path, "rb") as handle:
            pending = b""
            while block := pending or handle.read(_READ_BLOCK):
                pending = b""
                if stream is None:
                    stream = decompressor.decompressobj()
                parts.append(stream.decompress(block))
                if stream.eof:
                    yield b"".join(parts)
                    parts, pending, stream = [], stream.unused_data, None
    except zstandard.ZstdError as error:
        raise CorruptShardError(f"{path}: damaged zstd data ({error})") from None
    if stream is not None:
        raise CorruptShardError(f"{path}: the last chunk is truncated")


def iter_file_records(path: Path, kind: type[Any]) -> Iterator[Any]:
    """Yield the records of a record file without checking it against a manifest."""
    decoder = msgspec.msgpack.Decoder(list[kind])  # type: ignore[valid-type]
    for frame in iter_frames(path):
        try:
            chunk = decoder.decode(frame)
        except msgspec.DecodeError as error:
            raise CorruptShardError(f"{path}: undecodable chunk ({error})") from None
        yield from chunk


# ---------------------------------------------------------------- manifests


def load_manifest(paths: ShardPaths) -> ShardManifest | None:
    """The shard's manifest, or None while the shard is not finished."""
    try:
        raw = paths.manifest.read_bytes()
    except FileNotFoundError:
        return None
    try:
        fields = msgspec.json.decode(raw)
        if isinstance(fields, dict) and "stage" in fields:  # written before manifests named it step
            fields["step"] = fields.pop("stage")
        return msgspec.convert(fields, ShardManifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise CorruptShardError(
            f"{paths.manifest}: unreadable manifest ({error}); {regeneration_hint(paths)}"
        ) from None


def regeneration_hint(paths: ShardPaths) -> str:
    """What to delete so that the rerun makes a damaged shard again, and what it then redoes.

    A step's merged set is merged again from its shards, and the step after it starts from
    the same records; a step's inputs are written again when its directory is gone; a shard
    is run again while its step is not merged (a merged step does not read its shards).
    """
    if paths.directory.name == "merged":
        return f"delete {paths.manifest} and rerun: the step is merged again from its shards"
    if paths.directory.name == "inputs":
        return f"delete {paths.directory.parent} and rerun: the step is planned and run again"
    merged = ShardPaths(paths.directory / "merged", 0).manifest
    if merged.exists():
        return (
            f"its step is merged and does not read it again; to make it again, delete "
            f"{paths.manifest} and {merged} and rerun"
        )
    return f"delete {paths.manifest} and rerun: the shard is run again"


def verify_file(paths: ShardPaths, manifest: ShardManifest, name: str) -> None:
    """Raise :class:`CorruptShardError` unless file ``name`` matches its manifest entry."""
    entry = next((item for item in manifest.files if item.name == name), None)
    path = paths.directory / name
    hint = regeneration_hint(paths)
    if entry is None:
        raise CorruptShardError(f"{path}: not listed in {paths.manifest}; {hint}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorruptShardError(f"{path}: missing; {hint}") from None
    if size != entry.bytes:
        raise CorruptShardError(
            f"{path}: {size} bytes but the manifest says {entry.bytes} (truncated?); {hint}"
        )
    if sha256_of_file(path) != entry.sha256:
        raise CorruptShardError(f"{path}: sha256 differs from the manifest (altered); {hint}")


def _digest(path: Path, records: int) -> FileDigest:
    return FileDigest(path.name, path.stat().st_size, sha256_of_file(path), records)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_manifest(paths: ShardPaths, manifest: ShardManifest) -> None:
    atomic_write(paths.manifest, msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")


# ---------------------------------------------------------------- the resumable writer


class ShardWriter:
    """Appends a shard chunk by chunk and resumes after a crash; one writer per shard.

    Use it as a context manager: leaving the block without :meth:`finish` (an exception,
    a signal) keeps every committed chunk for the next writer.
    """

    def __init__(self, paths: ShardPaths, step: str, *, level: int = COMPRESSION_LEVEL) -> None:
        self.paths = paths
        self.step = step
        paths.directory.mkdir(parents=True, exist_ok=True)
        self._journal: IO[bytes] = open(paths.journal, "a+b")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(self._journal, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._journal.close()
            raise StoreError(
                f"{paths.data}: being written by another process (lock on {paths.journal})"
            ) from None
        if paths.manifest.exists():
            if paths.journal.stat().st_size == 0:
                paths.journal.unlink()  # the empty journal this call just created
            self._journal.close()
            raise StoreError(f"{paths.data}: shard is already complete ({paths.manifest})")
        self._entries = self._recover()
        self._consumed = {input_id for entry in self._entries for input_id in entry.inputs}
        self._data_end = self._entries[-1].data_end if self._entries else 0
        self._rejects_end = self._entries[-1].rejects_end if self._entries else 0
        self._codec = _FrameCodec(level)
        self._data: IO[bytes] = open(paths.data, "ab")  # noqa: SIM115
        self._rejects: IO[bytes] = open(paths.rejects, "ab")  # noqa: SIM115
        self._clock = time.monotonic()
        self._startup = 0.0
        self._closed = False

    def _recover(self) -> list[_JournalEntry]:
        """Keep the committed chunks whose bytes verify; cut everything after them."""
        self._journal.seek(0)
        raw = self._journal.read()
        decoder = msgspec.json.Decoder(_JournalEntry)
        entries: list[_JournalEntry] = []
        data_end = rejects_end = committed = 0
        while (newline := raw.find(b"\n", committed)) >= 0:
            try:
                entry = decoder.decode(raw[committed:newline])
            except msgspec.DecodeError:
                break
            data_ok = _sha256_of_range(self.paths.data, data_end, entry.data_end)
            rejects_ok = _sha256_of_range(self.paths.rejects, rejects_end, entry.rejects_end)
            if data_ok != entry.data_sha256 or rejects_ok != entry.rejects_sha256:
                break
            entries.append(entry)
            data_end, rejects_end, committed = entry.data_end, entry.rejects_end, newline + 1
        self._journal.truncate(committed)
        _truncate(self.paths.data, data_end)
        _truncate(self.paths.rejects, rejects_end)
        return entries

    @property
    def chunks(self) -> int:
        """Number of committed chunks, including those of earlier writers."""
        return len(self._entries)

    def pending(self, inputs: Iterable[Example]) -> Iterator[Example]:
        """The inputs that no committed chunk consumed, in their order."""
        return (record for record in inputs if record.id not in self._consumed)

    def write_chunk(
        self,
        records: Sequence[Example],
        rejects: Sequence[Rejection] = (),
        consumed: Sequence[str] = (),
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        requests: dict[str, int] | None = None,
    ) -> None:
        """Append and commit one chunk: its records, rejections and the inputs it used up
        (and what it asked the model: tokens, ``requests`` by call)."""
        again = [input_id for input_id in consumed if input_id in self._consumed]
        if again or len(set(consumed)) != len(consumed):
            raise ValueError(f"inputs consumed twice in shard {self.paths.data}: {again[:5]}")
        data_frame = self._codec.frame(records)
        rejects_frame = self._codec.frame(rejects)
        for handle, frame in ((self._data, data_frame), (self._rejects, rejects_frame)):
            if frame:
                handle.write(frame)
                handle.flush()
                os.fsync(handle.fileno())
        now = time.monotonic()
        entry = _JournalEntry(
            inputs=tuple(consumed),
            data_end=self._data_end + len(data_frame),
            data_sha256=hashlib.sha256(data_frame).hexdigest(),
            rejects_end=self._rejects_end + len(rejects_frame),
            rejects_sha256=hashlib.sha256(rejects_frame).hexdigest(),
            outputs=len(records),
            rejected=dict(Counter(rejection.reason for rejection in rejects)),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=round(now - self._clock, 3),
            requests=requests or {},
        )
        self._journal.write(msgspec.json.encode(entry) + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._clock = now
        self._entries.append(entry)
        self._consumed.update(consumed)
        self._data_end, self._rejects_end = entry.data_end, entry.rejects_end

    def report(self, live: LiveProgress) -> None:
        """Tell progress displays what this shard is doing now (not a commit: nothing in it
        is kept once the shard finishes)."""
        atomic_write(self.paths.live, msgspec.json.encode(live))

    def started(self, seconds: float) -> None:
        """Record how long this process took to load its model, for the manifest."""
        self._startup = round(seconds, 3)

    def discard(self) -> None:
        """Drop every committed chunk: for writers that are cheaper to redo than to resume."""
        for handle in (self._journal, self._data, self._rejects):
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
        self._entries, self._consumed = [], set()
        self._data_end = self._rejects_end = 0
        self._clock = time.monotonic()

    def finish(self) -> ShardManifest:
        """Write the manifest (the completion marker) and drop the journal."""
        rejected: Counter[str] = Counter()
        requests: Counter[str] = Counter()
        for entry in self._entries:
            rejected.update(entry.rejected)
            requests.update(entry.requests)
        outputs = sum(entry.outputs for entry in self._entries)
        self._data.close()
        self._rejects.close()
        manifest = ShardManifest(
            step=self.step,
            shard=self.paths.index,
            inputs=len(self._consumed),
            outputs=outputs,
            rejected=dict(sorted(rejected.items())),
            files=(
                _digest(self.paths.data, outputs),
                _digest(self.paths.rejects, rejected.total()),
            ),
            chunks=len(self._entries),
            wall_seconds=round(
                sum(entry.seconds for entry in self._entries) + time.monotonic() - self._clock, 3
            ),
            prompt_tokens=sum(entry.prompt_tokens for entry in self._entries),
            completion_tokens=sum(entry.completion_tokens for entry in self._entries),
            finished_at=_now(),
            startup_seconds=self._startup,
            requests=dict(sorted(requests.items())),
        )
        _write_manifest(self.paths, manifest)
        self.paths.journal.unlink(missing_ok=True)
        self.paths.live.unlink(missing_ok=True)
        self.close()
        return manifest

    def close(self) -> None:
        """Release the shard without finishing it; committed chunks stay for a resume."""
        if not self._closed:
            self._closed = True
            self._data.close()
            self._rejects.close()
            self._journal.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_record_file(path: Path, *, verify: bool = True) -> Iterator[Example | Rejection]:
    """Records of any shard data or rejects file, checked against its manifest if it has one."""
    paths = ShardPaths.of_file(path)
    kind: type[Any] = Rejection if path.name.endswith(_REJECTS_SUFFIX) else Example
    manifest = load_manifest(paths) if verify else None
    if manifest is not None:
        verify_file(paths, manifest, path.name)
    if not path.exists():
        raise StoreError(f"{path}: no such file")
    return iter_file_records(path, kind)


def shard_progress(paths: ShardPaths) -> ShardProgress:
    """How far a shard got: its manifest's counts or its committed chunks.

    Reads without locking, so a status display never disturbs a running writer.
    """
    manifest = load_manifest(paths)
    if manifest is not None:
        return ShardProgress(
            True,
            manifest.inputs,
            manifest.outputs,
            manifest.rejected_total,
            manifest.completion_tokens,
        )
    progress = ShardProgress(False, 0, 0, 0, 0)
    try:
        raw = paths.journal.read_bytes()
    except FileNotFoundError:
        return progress
    decoder = msgspec.json.Decoder(_JournalEntry)
    for line in raw.splitlines():
        try:
            entry = decoder.decode(line)
        except msgspec.DecodeError:
            break
        progress = ShardProgress(
            False,
            progress.inputs + len(entry.inputs),
            progress.outputs + entry.outputs,
            progress.rejected + sum(entry.rejected.values()),
            progress.completion_tokens + entry.completion_tokens,
        )
    return progress


def read_live(paths: ShardPaths) -> LiveProgress | None:
    """What an unfinished shard last said it was doing; None before its first
    report (or when the report does not decode: a display never stops on it)."""
    try:
        return msgspec.json.decode(paths.live.read_bytes(),
                                   type=LiveProgress)  # fmt: skip
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def write_whole_shard(
    paths: ShardPaths, step: str, records: Iterable[Example], *, level: int = COMPRESSION_LEVEL
) -> ShardManifest:
    """Write a shard of ``step`` whole, not chunk by chunk: data first, then its manifest."""
    paths.manifest.unlink(missing_ok=True)
    paths.directory.mkdir(parents=True, exist_ok=True)
    codec = _FrameCodec(level)
    count = 0
    with atomic_file(paths.data) as handle:
        for chunk in chunked(records, INPUT_CHUNK_SIZE):
            handle.write(codec.frame(chunk))
            count += len(chunk)
    manifest = ShardManifest(
        step=step,
        shard=paths.index,
        inputs=count,
        outputs=count,
        rejected={},
        files=(_digest(paths.data, count),),
        chunks=-(-count // INPUT_CHUNK_SIZE),
        wall_seconds=0.0,
        prompt_tokens=0,
        completion_tokens=0,
        finished_at=_now(),
    )
    _write_manifest(paths, manifest)
    return manifest


def read_verified(paths: ShardPaths, which: str, kind: type[Any]) -> Iterator[Any]:
    """The records of a finished shard's data or rejects file, verified against its manifest."""
    manifest = load_manifest(paths)
    if manifest is None:
        raise StoreError(f"{paths.data}: shard is not finished (no {paths.manifest.name})")
    path = paths.data if which == "data" else paths.rejects
    verify_file(paths, manifest, path.name)
    return iter_file_records(path, kind)
