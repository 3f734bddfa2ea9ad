"""The local executor: a worker process per job or per engine, its GPUs, re-attach and clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from laerebogen.config.loading import load_config
from laerebogen.errors import LaerebogenError
from laerebogen.launch.local import LocalLauncher
from laerebogen.launch.task import Submission, Task
from laerebogen.pipeline.plan import plan_first
from laerebogen.store.saved_config import start_run


def test_local_launcher_gives_each_shard_its_own_gpus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4")
    overrides = ["launch.local_parallelism=8", "models.base.tensor_parallel_size=2"]
    launcher = LocalLauncher(load_config("tiny", overrides), tmp_path)
    assert launcher.gpu_groups == [["0", "1"], ["2", "3"]] and launcher.slots == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(LaerebogenError, match="1 GPUs visible, but a model needs 2"):
        LocalLauncher(load_config("tiny", overrides), tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert LocalLauncher(load_config("tiny", overrides), tmp_path).slots == 8


def test_local_launcher_reattaches_to_a_shard_process_of_an_earlier_driver(
    tmp_path: Path,
) -> None:
    """A pid counts as the shard's job only while it runs that shard's command line."""
    run = str(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "shard", "--run", run, "--index", "3"]
    )
    try:
        launcher = LocalLauncher(load_config("tiny"), tmp_path)
        mine = Submission(3, 0, f"pid-{process.pid}", "log", "earlier", 0.0)
        other_shard = Submission(4, 0, f"pid-{process.pid}", "log", "earlier", 0.0)
        states = launcher.states([mine])
        assert states[mine.job_id].active
        assert not launcher.states([other_shard])[other_shard.job_id].active
    finally:
        process.kill()
        process.wait()
    assert not launcher.states([mine])[mine.job_id].active


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_local_jobs_leave_no_engine_processes_behind(
    tmp_path: Path, recipe_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job killed outright has its orphans (vLLM's engine processes) ended when it is reaped;
    an interrupted driver stops its running jobs, which keep their committed chunks."""
    # On CPUs the engine runs inside the job; GPU jobs run vLLM's engine core in processes of
    # its own, and those are the orphans a killed job leaves.
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    overrides = [
        *recipe_overrides,
        "generation.first_round_prompts=40",
        "generation.prompts_per_shard=40",
        "engine.chunk_size=1",
    ]
    config = load_config("tiny", overrides)
    store = start_run(config, tmp_path / "run")
    step = plan_first(store, config).step
    journal = tmp_path / "run" / step / "shard-00000.journal"
    launcher = LocalLauncher(config, tmp_path / "run")

    def started(attempt: int, chunks: int) -> Submission:
        (submission,) = launcher.submit([Task(str(tmp_path / "run"), step, 0, attempt)], "test")
        wait_for(
            lambda: journal.exists() and journal.read_bytes().count(b"\n") >= chunks,
            f"{chunks} committed chunks",
        )
        return submission

    killed = started(0, 1)
    pid = int(killed.job_id.split("-")[1])  # pid-<worker pid>-<job>
    assert len(group_members(pid)) > 1  # the job and vLLM's engine processes
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not launcher.states([killed])[killed.job_id].active, "the job to end")
    wait_for(lambda: not group_members(pid), "its orphans to be ended", seconds=10)

    committed = journal.read_bytes().count(b"\n")
    interrupted = started(1, committed + 1)
    pid = int(interrupted.job_id.split("-")[1])
    launcher.close()  # what the driver does when Ctrl-C stops it
    wait_for(lambda: not group_members(pid), "its processes to be ended", seconds=10)
    assert launcher.exit_codes == {killed.job_id: -signal.SIGKILL}  # close() forgets the rest
    assert not store.is_done(step, 0)
    assert journal.read_bytes().count(b"\n") > committed  # the resumed job's chunks stay
    log = Path(interrupted.log).read_text()
    assert "resuming after" in log and "Traceback" not in log


def test_a_local_worker_keeps_its_engine_between_jobs_and_retires_after_a_failure(
    tmp_path: Path, recipe_overrides: list[str]
) -> None:
    """Jobs of one model share a worker and its engine, each with its own log and exit code;
    a job that fails ends its worker, so the next job starts in a fresh process."""
    overrides = [
        *recipe_overrides,
        "generation.first_round_prompts=2",
        "generation.prompts_per_shard=1",
    ]
    config = load_config("tiny", overrides)
    run = tmp_path / "run"
    store = start_run(config, run)
    step = plan_first(store, config).step
    launcher = LocalLauncher(config, run)

    def finish(index: int) -> Submission:
        (submission,) = launcher.submit([Task(str(run), step, index, 0)], "test")
        wait_for(lambda: not launcher.states([submission])[submission.job_id].active, "the job")
        return submission

    try:
        first, second, missing, after = finish(0), finish(1), finish(7), finish(1)
    finally:
        launcher.close()
    assert store.is_done(step, 0) and store.is_done(step, 1)
    worker = first.job_id.split("-")[1]
    assert second.job_id.split("-")[1] == missing.job_id.split("-")[1] == worker
    assert "Initializing a V1 LLM engine" in Path(first.log).read_text()
    assert "Initializing a V1 LLM engine" not in Path(second.log).read_text()
    assert launcher.exit_codes[first.job_id] == launcher.exit_codes[second.job_id] == 0
    assert launcher.exit_codes[missing.job_id] == 2
    assert "error: generation-01 has shards 0-1, not 7" in Path(missing.log).read_text()
    assert after.job_id.split("-")[1] != worker  # a fresh worker after the failure
    assert "done already" in Path(after.log).read_text()
