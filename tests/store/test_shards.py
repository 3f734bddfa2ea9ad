"""The store: chunked atomic writes, resumption, verification and streaming reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laerebogen.errors import CorruptShardError, StoreError
from laerebogen.records import Example
from laerebogen.store.run_dir import RunStore
from laerebogen.store.shards import LiveProgress, iter_file_records
from tests.support.paths import REPOSITORY
from tests.support.records import consumed, make_example, write_shard


def test_a_working_shard_reports_its_phase_until_it_finishes(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.live("grammar", 0) is None
    with store.open_shard("grammar", 0) as writer:
        writer.report(LiveProgress("loading model"))
        assert store.live("grammar", 0) == LiveProgress("loading model")
        writer.report(LiveProgress("generating", 5, 12, 300))
        assert store.live("grammar", 0) == LiveProgress("generating", 5, 12, 300)
        writer.write_chunk([make_example(1)], [], consumed=["in-1"])
        writer.finish()
    assert store.live("grammar", 0) is None
    assert not store.output_paths("grammar", 0).live.exists()  # nothing left of it


def test_written_shard_reads_back_with_counts_and_checksums(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 7, 95)
    manifest = store.manifest("generation", 7)
    assert (manifest.inputs, manifest.outputs, manifest.chunks) == (95, 95, 10)
    assert manifest.rejected == {"not_danish": 24}
    assert (manifest.prompt_tokens, manifest.completion_tokens) == (950, 1900)
    assert [file.name for file in manifest.files] == [
        "shard-00007.msgpack.zst",
        "shard-00007.rejects.msgpack.zst",
    ]
    records = list(store.read_records("generation", 7))
    assert records == [make_example(700_000 + i) for i in range(95)]
    assert [r.reason for r in store.read_rejects("generation", 7)] == ["not_danish"] * 24
    assert not (tmp_path / "generation" / "shard-00007.journal").exists()
    assert store.done_shards("generation") == [7]
    assert store.is_done("generation", 7) and not store.is_done("generation", 8)


def test_a_done_shard_cannot_be_opened_again(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 0, 3)
    with pytest.raises(StoreError, match="already complete"):
        store.open_shard("generation", 0)
    assert not store.output_paths("generation", 0).journal.exists()


def test_a_second_writer_on_the_same_shard_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.open_shard("generation", 0), pytest.raises(StoreError, match="another process"):
        store.open_shard("generation", 0)


def test_resume_after_an_exception_skips_exactly_the_consumed_inputs(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    inputs = [make_example(i, stage="inputs") for i in range(30)]
    with pytest.raises(RuntimeError), store.open_shard("grammar", 0) as writer:
        for i in range(0, 20, 5):
            batch = inputs[i : i + 5]
            writer.write_chunk(
                [make_example(1000 + i) for i in range(i, i + 5)], consumed=[r.id for r in batch]
            )
        raise RuntimeError("engine crashed")
    with store.open_shard("grammar", 0) as writer:
        assert writer.chunks == 4
        pending = list(writer.pending(inputs))
        assert pending == inputs[20:]
        writer.write_chunk(
            [make_example(1000 + i) for i in range(20, 30)], consumed=[r.id for r in pending]
        )
        writer.finish()
    ids = [record.id for record in store.read_records("grammar", 0)]
    assert ids == [make_example(1000 + i).id for i in range(30)]
    assert store.manifest("grammar", 0).inputs == 30


def test_uncommitted_bytes_from_a_killed_writer_are_discarded(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.open_shard("generation", 0) as writer:
        writer.write_chunk([make_example(0)], consumed=["a"])
    paths = store.output_paths("generation", 0)
    # A kill after the frame was appended but before the commit, or inside the journal line.
    with open(paths.data, "ab") as handle:
        handle.write(b"\x28\xb5\x2f\xfd half a frame")
    with open(paths.journal, "ab") as handle:
        handle.write(b'{"inputs":["b"],"data_en')
    with store.open_shard("generation", 0) as writer:
        assert consumed(writer, "a") and not consumed(writer, "b")
        writer.write_chunk([make_example(1)], consumed=["b"])
        writer.finish()
    assert [r.id for r in store.read_records("generation", 0)] == [
        make_example(0).id,
        make_example(1).id,
    ]


def test_a_committed_chunk_whose_bytes_changed_is_redone(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.open_shard("generation", 0) as writer:
        writer.write_chunk([make_example(0)], consumed=["a"])
        writer.write_chunk([make_example(1)], consumed=["b"])
    paths = store.output_paths("generation", 0)
    size = paths.data.stat().st_size
    with open(paths.data, "r+b") as handle:
        handle.seek(size - 3)
        handle.write(b"XYZ")
    with store.open_shard("generation", 0) as writer:
        assert consumed(writer, "a") and not consumed(writer, "b")


def test_consuming_an_input_twice_is_a_bug(tmp_path: Path) -> None:
    with RunStore(tmp_path).open_shard("generation", 0) as writer:
        writer.write_chunk([], consumed=["a"])
        with pytest.raises(ValueError, match="consumed twice"):
            writer.write_chunk([], consumed=["a"])


KILLABLE_WRITER = textwrap.dedent(
    """
    import sys, time
    from laerebogen.store.run_dir import RunStore
    from tests.support.records import consumed, make_example

    run, total, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    inputs = [f"in-{i}" for i in range(total)]
    with RunStore(run).open_shard("generation", 3) as writer:
        todo = [i for i in range(total) if not consumed(writer, inputs[i])]
        for start in range(0, len(todo), 7):
            batch = todo[start : start + 7]
            # two outputs per input, like a prompt that yields several tasks
            records = [make_example(2 * i + k) for i in batch for k in (0, 1)]
            writer.write_chunk(records, consumed=[inputs[i] for i in batch])
            print("committed", writer.chunks, flush=True)
            time.sleep(pause)
        writer.finish()
    """
)


def test_sigkill_mid_shard_then_resume_yields_every_record_once(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(KILLABLE_WRITER)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    total = 200
    victim = subprocess.Popen(
        [sys.executable, str(script), str(run), str(total), "0.05"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert victim.stdout is not None
    for _ in range(5):
        assert victim.stdout.readline().startswith("committed")
    time.sleep(0.02)  # land the kill at an arbitrary point of the next chunk
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    store = RunStore(run)
    assert not store.is_done("generation", 3)
    finished = subprocess.run(
        [sys.executable, str(script), str(run), str(total), "0"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert finished.returncode == 0
    ids = [record.id for record in store.read_records("generation", 3)]
    expected = [make_example(2 * i + k).id for i in range(total) for k in (0, 1)]
    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids)) == 2 * total
    assert store.manifest("generation", 3).inputs == total


def test_truncated_shard_is_detected_with_file_name_and_remedy(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 1, 50)
    paths = store.output_paths("generation", 1)
    with open(paths.data, "r+b") as handle:
        handle.truncate(paths.data.stat().st_size - 10)
    with pytest.raises(CorruptShardError) as caught:
        list(store.read_records("generation", 1))
    message = str(caught.value)
    assert str(paths.data) in message and "truncated" in message
    assert f"delete {paths.manifest}" in message


def test_bit_flipped_shard_is_detected(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 2, 50)
    paths = store.output_paths("generation", 2)
    data = bytearray(paths.data.read_bytes())
    data[len(data) // 2] ^= 0x01
    paths.data.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="sha256 differs"):
        list(store.read_records("generation", 2))
    # Rejects are verified separately and are still fine.
    assert len(list(store.read_rejects("generation", 2))) == 13


def test_an_unfinished_shard_is_not_read_as_done(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.open_shard("generation", 0) as writer:
        writer.write_chunk([make_example(0)], consumed=["a"])
    with pytest.raises(StoreError, match="not finished"):
        list(store.read_records("generation", 0))
    assert store.done_shards("generation") == []


def test_a_truncated_frame_is_reported_when_reading_without_a_manifest(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 0, 30)
    paths = store.output_paths("generation", 0)
    paths.data.write_bytes(paths.data.read_bytes()[:-5])
    with pytest.raises(CorruptShardError, match=r"truncated|damaged"):
        list(iter_file_records(paths.data, Example))


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=6),
    data_cut=st.floats(min_value=0.0, max_value=1.0),
    journal_cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_any_crash_state_recovers_to_a_prefix_of_committed_chunks(
    sizes: list[int], data_cut: float, journal_cut: float
) -> None:
    chunks = [[make_example(100 * c + i) for i in range(size)] for c, size in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        with store.open_shard("generation", 0) as writer:
            for number, chunk in enumerate(chunks):
                writer.write_chunk(chunk, consumed=[f"in-{number}"])
        paths = store.output_paths("generation", 0)
        for path, cut in ((paths.data, data_cut), (paths.journal, journal_cut)):
            with open(path, "r+b") as handle:
                handle.truncate(int(path.stat().st_size * cut))
        with store.open_shard("generation", 0) as writer:
            kept = writer.chunks
            assert all(consumed(writer, f"in-{n}") == (n < kept) for n in range(len(chunks)))
            writer.finish()
        assert list(store.read_records("generation", 0)) == [r for c in chunks[:kept] for r in c]


def test_a_manifest_written_before_steps_were_called_steps_still_reads(tmp_path: Path) -> None:
    """Manifests of runs made before the move to subpackages name the step ``stage``."""
    store = RunStore(tmp_path)
    with store.open_shard("grammar", 0) as writer:
        writer.write_chunk([make_example(0)], consumed=["a"])
        manifest = writer.finish()
    path = store.output_paths("grammar", 0).manifest
    old = path.read_text().replace('"step":', '"stage":')
    assert '"stage":"grammar"' in old.replace(" ", "")
    path.write_text(old)
    assert store.manifest("grammar", 0) == manifest and manifest.step == "grammar"
    assert [r.id for r in store.read_records("grammar", 0)] == [make_example(0).id]
