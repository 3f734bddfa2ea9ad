"""The run directory: names that stay inside it, run-level files, inputs and the driver lock."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from laerebogen.errors import CorruptShardError, StoreError
from laerebogen.records import Example
from laerebogen.store.atomic import atomic_lines
from laerebogen.store.run_dir import RunStore
from tests.support.records import make_example, write_shard
from tests.support.runs import hold_driver_lock


def test_inputs_are_written_whole_and_verified(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    records = [make_example(i) for i in range(4500)]
    manifest = store.write_inputs("quality", 4, records)
    assert manifest.outputs == 4500 and manifest.chunks == 3
    assert store.input_paths("quality", 4).manifest.exists()
    assert list(store.read_inputs("quality", 4)) == records
    paths = store.input_paths("quality", 4)
    paths.data.write_bytes(paths.data.read_bytes()[:100])
    with pytest.raises(CorruptShardError):
        list(store.read_inputs("quality", 4))


def test_stage_names_cannot_escape_the_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="invalid step name"):
        RunStore(tmp_path).step_dir("../elsewhere")


def test_run_level_text_files_are_written_atomically(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    assert store.read_text("config.toml") is None
    store.write_text("config.toml", "seed = 1\n")
    assert store.read_text("config.toml") == "seed = 1\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.toml"]


def test_a_write_that_fails_half_way_keeps_the_old_file_and_leaves_no_debris(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export" / "data.jsonl"
    atomic_lines(path, [b"old"])

    def lines_then_failure() -> Iterator[bytes]:
        yield b"new"
        raise RuntimeError("the record source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        atomic_lines(path, lines_then_failure())
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in path.parent.iterdir()] == ["data.jsonl"]

    store = RunStore(tmp_path / "run")

    def records_then_failure() -> Iterator[Example]:
        yield make_example(0)
        raise RuntimeError("planning broke")

    with pytest.raises(RuntimeError, match="planning broke"):
        store.write_inputs("quality", 0, records_then_failure())
    assert not store.input_paths("quality", 0).data.exists()
    assert not list(store.input_paths("quality", 0).directory.glob(".*.tmp"))


def test_stage_reads_stream_in_memory_independent_of_shard_count(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for index in range(4):
        write_shard(store, "few", index, 500, chunk=250)
    for index in range(40):
        write_shard(store, "many", index, 500, chunk=250)
    few_count, few_peak = _peak_bytes_reading(store, "few")
    many_count, many_peak = _peak_bytes_reading(store, "many")
    assert (few_count, many_count) == (2000, 20_000)
    assert many_peak < 1.5 * few_peak


def test_one_driver_holds_a_run_and_a_killed_one_leaves_no_lock(tmp_path: Path) -> None:
    holder = hold_driver_lock(tmp_path)
    try:
        with pytest.raises(StoreError) as refused, RunStore(tmp_path).driver_lock():
            pass
        message = str(refused.value)
        assert f"another driver is running this run (host {os.uname().nodename}, " in message
        assert f"pid {holder.pid}, since 20" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    with RunStore(tmp_path).driver_lock() as locked:  # the kernel dropped the dead one's lock
        assert locked
        assert f"pid {os.getpid()}" in (tmp_path / "driver.lock").read_text()
    assert (tmp_path / "driver.lock").read_text() == ""


def _peak_bytes_reading(store: RunStore, stage: str) -> tuple[int, int]:
    tracemalloc.start()
    count = sum(1 for i in store.done_shards(stage) for _ in store.read_records(stage, i))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return count, peak
