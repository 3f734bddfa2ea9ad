"""The recipe on the real local SLURM cluster: submitit arrays, merge jobs, failures, resumes.

The test cluster's MaxArraySize is small (4, see the Makefile), so the first generation
round's 5 shards go out as two arrays. The recipe runs on the real engine; the tests of retries,
requeueing and the container command use the canned engine (tests/support/canned_engine.py),
since what they check is SLURM's and the driver's part.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from laerebogen.launch.task import MERGE
from laerebogen.store.run_dir import RunStore
from tests.support.canned_engine import SECONDS_VARIABLE
from tests.support.commands import sets
from tests.support.runs import (
    GENERATION_ONLY,
    check_no_record_lost_or_duplicated,
    hold_journal,
    release_after_first_failure,
    shard_submissions,
    steps_of,
)
from tests.support.slurm_cluster import SlurmCluster

DRIVER_TIMEOUT = 600


def start_driver(run: Path, overrides: list[str], log: Path) -> subprocess.Popen[str]:
    """``laerebogen dataset --executor slurm`` in the background, its output in ``log``."""
    command = [
        sys.executable, "-m", "laerebogen", "dataset", "--config", "tiny", "--run", str(run),
        "--executor", "slurm", *sets(overrides),
    ]  # fmt: skip
    handle = open(log, "a")  # noqa: SIM115 (the process owns it)
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, text=True)


def wait_for(what: str, condition: Callable[[], object], timeout: float = 300) -> None:
    """Poll ``condition`` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def recorded(run: Path, step: str) -> list[dict]:
    """The step's submissions so far (none before the driver wrote them)."""
    path = run / step / "jobs.json"
    return json.loads(path.read_text())["submissions"] if path.exists() else []


def squeue_states() -> dict[str, str]:
    """Queued and running jobs, one line per array task."""
    output = subprocess.run(
        ["squeue", "--me", "--array", "--noheader", "--format=%i|%T"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("|", 1) for line in output.splitlines())


def test_slurm_recipe_survives_a_killed_driver_and_a_cancelled_array_task(
    slurm_cluster: SlurmCluster, tmp_path: Path, recipe_overrides: list[str], reference_run: Path
) -> None:
    assert slurm_cluster.max_array_size == 4
    run, log = tmp_path / "run", tmp_path / "driver.log"
    overrides = [*recipe_overrides, "launch.max_retries=0"]
    first = start_driver(run, overrides, log)
    # The driver dies (SIGKILL) while generation-01's jobs are queued or running.
    wait_for("the first round's 5 shards", lambda: len(recorded(run, "generation-01")) == 5)
    first.kill()
    first.wait()
    launched = recorded(run, "generation-01")
    arrays = [s["job_id"].split("_")[0] for s in launched]
    assert len(set(arrays)) == 2 and arrays.count(arrays[0]) == 4  # windows of 4 and 1
    assert not all(RunStore(run).is_done("generation-01", i) for i in range(5))
    # A new driver re-attaches to those jobs, then a grammar array task is cancelled mid-run.
    second = start_driver(run, overrides, log)
    wait_for("grammar's array", lambda: len(recorded(run, "grammar")) == 2)
    cancelled = shard_submissions(run, "grammar", 1)[0]["job_id"]
    wait_for("the task to run", lambda: squeue_states().get(cancelled) == "RUNNING")
    subprocess.run(["scancel", cancelled], check=True)
    assert second.wait(timeout=DRIVER_TIMEOUT) == 2
    output = log.read_text()
    assert f"grammar shard 1: job {cancelled} ended without finishing (CANCELLED" in output
    assert "grammar: 1 job(s) failed 1 time(s); the run stopped." in output
    assert f"log {run}/logs/grammar/{cancelled}_0_log.err" in output
    assert recorded(run, "generation-01")[:5] == launched
    assert len(shard_submissions(run, "generation-01", MERGE)) == 1
    # The same command finishes the run.
    third = start_driver(run, overrides, log)
    assert third.wait(timeout=DRIVER_TIMEOUT) == 0, log.read_text()[-3000:]
    assert [len(shard_submissions(run, "generation-01", i)) for i in range(5)] == [1] * 5
    assert len(shard_submissions(run, "grammar", 1)) == 2
    check_no_record_lost_or_duplicated(run)
    assert steps_of(run) == steps_of(reference_run)
    assert (run / "dataset.jsonl").read_bytes() == (reference_run / "dataset.jsonl").read_bytes()


def test_slurm_retries_a_failed_array_task(
    slurm_cluster: SlurmCluster, tmp_path: Path, recipe_overrides: list[str], canned_engine: None
) -> None:
    run, log = tmp_path / "run", tmp_path / "driver.log"
    held = hold_journal(run, "generation-01", 0)
    releaser = release_after_first_failure(run, "generation-01", held)
    overrides = [*recipe_overrides, *GENERATION_ONLY, "launch.max_retries=1"]
    driver = start_driver(run, overrides, log)
    assert driver.wait(timeout=DRIVER_TIMEOUT) == 0, log.read_text()[-3000:]
    releaser.join()
    tried = shard_submissions(run, "generation-01", 0)
    assert len(tried) == 2 and tried[0]["session"] == tried[1]["session"]
    assert f"job {tried[0]['job_id']} ended without finishing (FAILED" in log.read_text()
    check_no_record_lost_or_duplicated(run)


@pytest.mark.skipif(os.geteuid() != 0, reason="requeueing needs a SLURM operator (root here)")
def test_usr2_checkpoints_and_requeues_a_shard_that_keeps_its_chunks(
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
    recipe_overrides: list[str],
    canned_engine: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a time limit or preemption does: submitit's USR2, requeue, resume."""
    monkeypatch.setenv(SECONDS_VARIABLE, "0.5")  # 16 chunks in 8 s: the signal comes between
    run, log = tmp_path / "run", tmp_path / "driver.log"
    overrides = [
        *recipe_overrides, *GENERATION_ONLY, "generation.first_round_prompts=16",
        "generation.prompts_per_shard=16", "engine.chunk_size=1", "launch.max_retries=0",
    ]  # fmt: skip
    driver = start_driver(run, overrides, log)
    journal = run / "generation-01" / "shard-00000.journal"

    def committed() -> int:
        return journal.read_bytes().count(b"\n") if journal.exists() else 0

    wait_for("two committed chunks", lambda: committed() >= 2)
    job = shard_submissions(run, "generation-01", 0)[0]["job_id"]
    subprocess.run(["scancel", f"--signal={signal.SIGUSR2.name[3:]}", job], check=True)
    # SLURM holds a requeued job back for a while; let it start again at once.
    shard_log = Path(shard_submissions(run, "generation-01", 0)[0]["log"])
    wait_for("the requeue", lambda: "DUE TO JOB REQUEUE" in shard_log.read_text())
    wait_for("the requeued job to wait", lambda: squeue_states().get(job) == "PENDING")
    # Not in the second its old credential was revoked in: SLURM kills a job started then
    # ("Job credential revoked"), which is why it holds requeued jobs back.
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    assert driver.wait(timeout=DRIVER_TIMEOUT) == 0, log.read_text()[-3000:]
    assert len(shard_submissions(run, "generation-01", 0)) == 1  # requeued, not resubmitted
    assert "resuming after" in shard_log.read_text()
    assert RunStore(run).manifest("generation-01", 0).inputs == 16
    check_no_record_lost_or_duplicated(run)


STAND_IN = """#!/usr/bin/env bash
# Stands in for apptainer, which cannot be installed here: checks the command line the driver
# gives array tasks, records it, then runs the python command on the host.
set -euo pipefail
echo "$*" >> {log}
fail() {{ echo "stand-in apptainer: $*" >&2; exit 90; }}
[[ "$1" == exec && "$2" == --nv && "$3" == --bind ]] || fail "expected exec --nv --bind: $*"
IFS=, read -ra binds <<< "$4"
for needed in {binds}; do
    printf '%s\\n' "${{binds[@]}}" | grep -qxF "$needed" || fail "$needed is not bound"
done
[[ "$5" == {image} && -f "$5" ]] || fail "wrong image $5"
[[ "$6" == python ]] || fail "expected python, got $6"
shift 6
exec {python} "$@"
"""


def test_array_tasks_run_through_the_container_command(
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
    recipe_overrides: list[str],
    tiny_model_dir: Path,
    canned_engine: None,
) -> None:
    run, log, calls = tmp_path / "run", tmp_path / "driver.log", tmp_path / "apptainer-calls"
    image = tmp_path / "images" / "laerebogen.sif"
    image.parent.mkdir()
    image.write_bytes(b"not really an image")
    stand_in = tmp_path / "bin" / "apptainer"
    stand_in.parent.mkdir()
    stand_in.write_text(
        STAND_IN.format(
            log=calls,
            binds=f"{run.resolve()} {tiny_model_dir}",
            image=image,
            python=sys.executable,
        )
    )
    stand_in.chmod(0o755)
    overrides = [
        *recipe_overrides, *GENERATION_ONLY, f"container.image={str(image)!r}",
    ]  # fmt: skip
    environment = {**os.environ, "PATH": f"{stand_in.parent}:{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "laerebogen", "dataset", "--config", "tiny", "--run", str(run),
        "--executor", "slurm", *sets(overrides),
    ]  # fmt: skip
    with open(log, "w") as output:
        driver = subprocess.run(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            timeout=600,
            check=False,
        )
    assert driver.returncode == 0, log.read_text()[-3000:]
    lines = calls.read_text().splitlines()
    assert len(lines) == 2  # the shard's array task and the merge job
    assert all(line.startswith(f"exec --nv --bind {run.resolve()},") for line in lines)
    assert all(f" {image} python -u -m submitit.core._submit " in line for line in lines)
    scripts = list((run / "logs" / "generation-01").glob("*_submission.sh"))
    assert scripts and all("apptainer exec --nv" in s.read_text() for s in scripts)
    assert (run / "dataset.jsonl").is_file()
