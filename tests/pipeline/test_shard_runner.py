"""``laerebogen shard``: exactly what an array task runs, resumed after SIGKILL, no-op when done."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.inference.cache import EngineCache
from laerebogen.pipeline.plan import plan_first
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.canned_engine import SECONDS_VARIABLE
from tests.support.commands import laerebogen
from tests.support.finished_run import conversation, finished_run

STEP = "generation-01"


def planned_run(tmp_path: Path, recipe_overrides: list[str], *extra: str) -> Path:
    """A run whose first generation round is planned and not started."""
    run = tmp_path / "run"
    config = load_config("tiny", [*recipe_overrides, *extra])
    plan_first(start_run(config, run), config)
    return run


def test_a_killed_shard_resumes_after_its_last_committed_chunk(
    tmp_path: Path,
    recipe_overrides: list[str],
    canned_engine: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECONDS_VARIABLE, "0.2")  # a chunk of one input every 0.2 s
    run = planned_run(
        tmp_path,
        recipe_overrides,
        "generation.first_round_prompts=12",
        "generation.prompts_per_shard=12",
        "engine.chunk_size=1",
    )
    journal = run / STEP / "shard-00000.journal"
    command = [sys.executable, "-m", "laerebogen", "shard", "--run", str(run), "--step", STEP]
    shard = subprocess.Popen(
        [*command, "--index", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the engine's worker processes die with it
    )
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 3):
        assert shard.poll() is None and time.monotonic() < deadline, "no chunk committed"
        time.sleep(0.05)
    os.killpg(shard.pid, signal.SIGKILL)
    shard.wait()
    store = RunStore(run)
    assert not store.is_done(STEP, 0)
    committed = journal.read_bytes().count(b"\n")
    data = (run / STEP / "shard-00000.msgpack.zst").read_bytes()
    resumed = laerebogen("shard", "--run", str(run), "--step", STEP, "--index", "0")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after {committed} committed chunks" in resumed.stderr
    manifest = store.manifest(STEP, 0)
    assert manifest.inputs == 12 and manifest.chunks == 12
    assert (run / STEP / "shard-00000.msgpack.zst").read_bytes().startswith(data)
    records = list(store.read_records(STEP, 0))
    assert {step.model for r in records for step in r.provenance.steps} == {"canned-tiny"}
    ids = [record.id for record in records]
    assert len(ids) == len(set(ids)) == manifest.outputs
    # A finished shard is a no-op: no engine, no file touched.
    before = {path: path.stat().st_mtime_ns for path in (run / STEP).iterdir()}
    # (--stage, the flag's old name, still works and says so)
    again = laerebogen("shard", "--run", str(run), "--stage", STEP, "--index", "0", timeout=60)
    assert again.returncode == 0 and "done already" in again.stderr
    assert "--stage is now --step" in again.stderr
    assert "vllm" not in again.stderr.lower()
    assert {path: path.stat().st_mtime_ns for path in (run / STEP).iterdir()} == before


def test_shard_errors_are_one_line(tmp_path: Path, recipe_overrides: list[str]) -> None:
    run = planned_run(tmp_path, recipe_overrides)
    unplanned = laerebogen("shard", "--run", str(run), "--step", "grammar", "--index", "0")
    assert unplanned.returncode == 2
    assert "step 'grammar' is not planned" in unplanned.stderr
    beyond = laerebogen("shard", "--run", str(run), "--step", STEP, "--index", "9")
    assert beyond.returncode == 2 and "has shards 0-4, not 9" in beyond.stderr
    inputs = run / STEP / "inputs" / "shard-00001.msgpack.zst"
    inputs.write_bytes(inputs.read_bytes()[:-5])
    corrupt = laerebogen("shard", "--run", str(run), "--step", STEP, "--index", "1")
    assert corrupt.returncode == 2 and str(inputs) in corrupt.stderr
    assert "Traceback" not in corrupt.stderr and len(corrupt.stderr.strip().splitlines()) == 1
    not_a_run = laerebogen("shard", "--run", str(tmp_path), "--step", STEP, "--index", "0")
    assert not_a_run.returncode == 2 and "not a run directory" in not_a_run.stderr
    no_step = laerebogen("shard", "--run", str(run), "--index", "0")
    assert no_step.returncode == 2 and "--step is required" in no_step.stderr


def test_roles_that_differ_only_in_rendering_share_one_loaded_model(tiny_config: Config) -> None:
    """The local config's two roles are one model, one rendering chats as a transcript: a
    worker or the debug executor loads it once, and keeps at most ``keep`` models loaded."""
    instruct = msgspec.structs.replace(tiny_config.models["instruct"], chat_template="transcript")
    models = tiny_config.models | {"instruct": instruct}
    config = msgspec.structs.replace(tiny_config, models=models)
    cache = EngineCache(keep=1)
    try:
        base, chats = cache.get(config, "base"), cache.get(config, "instruct")
        assert chats.load() is base.load() and chats.model.chat_template == "transcript"
        assert cache.get(config, "base") is base and len(cache._engines) == 1
    finally:
        cache.close()


def file_digests(run: Path, leave_out: str) -> dict[str, str]:
    """The sha256 of every file of a run outside ``leave_out`` (a step's own directory)."""
    return {
        str(path.relative_to(run)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run.rglob("*"))
        if path.is_file() and path.relative_to(run).parts[0] not in (leave_out, "logs")
    }


def test_the_code_check_step_contains_hostile_code_and_the_run_goes_on(tmp_path: Path) -> None:
    """Each hostile block is classified, the run directory and HOME are unchanged, and every
    conversation comes out of the shard and the merge, as an array task runs them."""
    home_file = Path.home() / ".laerebogen-hostile-test"
    merged = "followups/merged/shard-00000.msgpack.zst"
    hostile = {
        "fork bomb": ("import os\nwhile True:\n    os.fork()", "not_verifiable"),
        "memory bomb": ("blok = bytearray(16 * 1024**3)", "resource_limit"),
        "infinite loop": ("while True:\n    pass", "resource_limit"),
        "home": (f"open({str(home_file)!r}, 'w').write('x')", "not_verifiable"),
        "run": (f"import os\nos.remove({str(tmp_path / 'run' / merged)!r})", "not_verifiable"),
        "read": (
            f"raise SystemExit(open({str(tmp_path / 'run' / merged)!r}, 'rb').read(9))",
            "not_verifiable",
        ),
        "socket": ("import socket\nsocket.create_connection(('127.0.0.1', 22))", "not_verifiable"),
        "shell": ("import subprocess\nsubprocess.run('rm -rf ~', shell=True)", "not_verifiable"),
        "limits": (
            "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
            "not_verifiable",
        ),
        "harmless": ("print(sum(range(10)))", "ok"),
    }
    records = [
        conversation(f"Skriv kode ({name}).", f"Her:\n```python\n{code}\n```", index=index)
        for index, (name, (code, _)) in enumerate(hostile.items())
    ]
    store, _ = finished_run(
        tmp_path,
        records,
        overrides=[
            "code_check.timeout_seconds=3",
            "code_check.cpu_seconds=1",
            "code_check.records_per_shard=20",
        ],
        annotate=False,
        code_checks=[],
        stop_before="code_check",
    )
    run = store.root
    before = file_digests(run, "code_check")
    shard = laerebogen("shard", "--run", str(run), "--step", "code_check", "--index", "0")
    assert shard.returncode == 0, shard.stderr
    merge = laerebogen("merge", "--run", str(run), "--step", "code_check")
    assert merge.returncode == 0, merge.stderr
    checked = list(store.read_merged("code_check"))
    assert [record.id for record in checked] == [record.id for record in records]
    outcomes = {
        name: (record.code_check[0].outcome, record.code_check[0].detail)
        for name, record in zip(hostile, checked, strict=True)
    }
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == {
        name: outcome for name, (_, outcome) in hostile.items()
    }, outcomes
    assert file_digests(run, "code_check") == before
    assert not home_file.exists()


def test_a_killed_code_check_shard_resumes_without_running_committed_code_again(
    tmp_path: Path,
) -> None:
    """A chunk of the code_check step is committed like a model step's: killed while its
    second chunk runs, the rerun (a new attempt) checks only the records after the first."""
    records = [
        conversation("Kode?", f"```python\nimport time\ntime.sleep({seconds})\n```", index=index)
        for index, seconds in enumerate([0, 0, 3, 0])
    ]
    store, _ = finished_run(
        tmp_path,
        records,
        overrides=["engine.chunk_size=2", "code_check.timeout_seconds=20"],
        annotate=False,
        code_checks=[],
        stop_before="code_check",
    )
    run, journal = store.root, store.root / "code_check" / "shard-00000.journal"
    command = [sys.executable, "-m", "laerebogen", "shard", "--run", str(run)]
    shard = subprocess.Popen(
        [*command, "--step", "code_check", "--index", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 1):
        assert shard.poll() is None and time.monotonic() < deadline, "no chunk committed"
        time.sleep(0.05)
    os.killpg(shard.pid, signal.SIGKILL)  # the sandboxes of the second chunk die with it
    shard.wait()
    assert not store.is_done("code_check", 0)
    resumed = laerebogen(*command[3:], "--step", "code_check", "--index", "0", "--attempt", "1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after 1 committed chunks" in resumed.stderr
    attempts = [
        record.provenance.steps[-1].attempt for record in store.read_records("code_check", 0)
    ]
    assert attempts == [0, 0, 1, 1]
