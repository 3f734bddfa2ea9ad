"""What orchestration costs on the local SLURM cluster: per stage, and for 10,000 shards.

1. **Stage overhead**: one step of the tiny recipe (base generation, 2 shards on the tiny
   random model) run by the real driver through submitit arrays and a merge job: the step's
   wall time minus the slowest shard's own work, from its array task's start (sacct) to its
   manifest (python start, engine start and generation). What is left is submission,
   scheduling, the driver noticing results, and the merge job. Not the task's ``ElapsedRaw``:
   that also counts vLLM's shut-down after the manifest, which overlaps the merge job.
   Target: <= 10 s.
2. **10,000 shards**: the driver's time to plan a step of 10,000 one-prompt shards (input
   shards and manifests written through the store) and to submit them as held SLURM arrays
   (then cancelled), next to a baseline measured in the same run: plain ``sbatch --array``
   of the same windows with a one-line script.

Run with the local cluster up (``make cluster``). The test cluster's small MaxArraySize is raised
to SLURM's default (1001) for the run and put back afterwards, which restarts the cluster;
``--keep-cluster`` (what the test suite's small run uses) submits in the cluster's own windows.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from laerebogen.config.loading import load_config
from laerebogen.launch.slurm import SlurmLauncher, max_array_size, windows
from laerebogen.launch.task import Task
from laerebogen.models.tiny import build_tiny_model
from laerebogen.pipeline.driver import Driver
from laerebogen.pipeline.jobs import JobRunner, StepJobs, jobs_file
from laerebogen.pipeline.plan import plan_first, write_step
from laerebogen.stages.generation import prompt_slots
from laerebogen.store.saved_config import start_run

TARGET_SECONDS = 10.0
DEFAULT_MAX_ARRAY_SIZE = 1001
STEP_OVERRIDES = [
    "generation.first_round_prompts=4",
    "generation.prompts_per_shard=2",
    "launch.max_retries=0",
]


def sacct_rows(job_ids: list[str]) -> dict[str, tuple[datetime, int]]:
    """Start (local time, as sacct prints it) and ``ElapsedRaw`` of finished jobs.

    sacct lags a few seconds behind the jobs, hence the polling.
    """
    arrays = ",".join(sorted({job.split("_")[0] for job in job_ids}))
    for _ in range(60):
        output = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,Start,ElapsedRaw,State", "-j", arrays],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rows = {line.split("|")[0]: line.split("|") for line in output.splitlines()}
        if all(job in rows and rows[job][3] == "COMPLETED" for job in job_ids):
            return {
                job: (datetime.fromisoformat(rows[job][1]).astimezone(), int(rows[job][2]))
                for job in job_ids
            }
        time.sleep(1)
    raise SystemExit(f"sacct never showed {job_ids} as COMPLETED")


def stage_overhead(scratch: Path, models: Path | None) -> tuple[float, float, float]:
    """Wall time of one step, its slowest shard's work and its merge job, in seconds; on the
    tiny model in ``models`` (built into ``scratch`` if None)."""
    if models is None:
        models = scratch / "models"
        build_tiny_model(models / "tiny", progress=lambda _: None)
    config = load_config("tiny", [f"model_dir={str(models)!r}", *STEP_OVERRIDES])
    run = scratch / "run"
    store = start_run(config, run)
    plan = plan_first(store, config)
    launcher = SlurmLauncher(config, run, JobRunner())
    driver = Driver(config, store, launcher, out=io.StringIO(), poll_seconds=2.0)
    start = time.perf_counter()
    driver.run_step(plan)
    wall = time.perf_counter() - start
    jobs = store.read_state(jobs_file(plan.step), StepJobs) or StepJobs()
    shards = {s.job_id: s.index for s in jobs.submissions if s.index >= 0}
    merge_job = next(s.job_id for s in jobs.submissions if s.index < 0)
    rows = sacct_rows([*shards, merge_job])
    work = [
        (datetime.fromisoformat(store.manifest(plan.step, index).finished_at) - rows[job][0])
        for job, index in shards.items()
    ]
    return wall, max(work).total_seconds(), rows[merge_job][1]


def cancel(job_ids: list[str]) -> None:
    """Cancel whole arrays (the benchmark's held jobs never run)."""
    arrays = sorted({job.split("_")[0] for job in job_ids})
    for start in range(0, len(arrays), 500):
        subprocess.run(["scancel", *arrays[start : start + 500]], check=False)


def submit_many(scratch: Path, shards: int) -> tuple[float, float, float]:
    """Seconds to plan ``shards`` shards, to submit them held, and the sbatch baseline."""
    overrides = ["generation.prompts_per_shard=1", "slurm.extra={hold=true}"]
    config = load_config("tiny", overrides)
    run = scratch / "many"
    store = start_run(config, run)
    start = time.perf_counter()
    plan = write_step(store, config, ("generation-01", "generation", 1), prompt_slots(1, shards))
    planned = time.perf_counter() - start
    launcher = SlurmLauncher(config, run, JobRunner())
    tasks = [Task(str(run), plan.step, index, 0) for index in range(plan.shards)]
    start = time.perf_counter()
    submitted = launcher.submit(tasks, "benchmark")
    store.write_state(jobs_file(plan.step), StepJobs(submitted))
    submitting = time.perf_counter() - start
    cancel([s.job_id for s in submitted])
    script = scratch / "noop.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    start = time.perf_counter()
    baseline_ids = []
    for window in windows(tasks, launcher.window):
        output = subprocess.run(
            ["sbatch", "--parsable", "--hold", f"--array=0-{len(window) - 1}",
             f"--output={scratch}/noop-%A_%a.out", str(script)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        baseline_ids.append(output.strip().split(";")[0])
    baseline = time.perf_counter() - start
    cancel(baseline_ids)
    return planned, submitting, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--model-dir", type=Path, help="holds a built tiny/ (default: build one)")
    parser.add_argument(
        "--keep-cluster",
        action="store_true",
        help="submit in the cluster's own MaxArraySize windows instead of restarting the local "
        "cluster with SLURM's default (which would disturb other users of it, e.g. a test run)",
    )
    args = parser.parse_args()
    before = max_array_size()
    restart = before < DEFAULT_MAX_ARRAY_SIZE and not args.keep_cluster
    if restart:  # the test cluster's small windows; SLURM's default
        local_cluster(DEFAULT_MAX_ARRAY_SIZE)
    try:
        overhead, planned, submitting, baseline = measure(args.shards, args.model_dir)
    finally:
        if restart:
            local_cluster(before)
    print(
        f"RESULT stage_overhead_s={overhead:.1f} target_s={TARGET_SECONDS:g} "
        f"plan_{args.shards}_s={planned:.1f} submit_{args.shards}_s={submitting:.2f} "
        f"sbatch_baseline_s={baseline:.2f} submit_ratio={submitting / baseline:.1f} "
        f"ok={'yes' if overhead <= TARGET_SECONDS else 'no'}"
    )


def local_cluster(max_array_size: int) -> None:
    """(Re)start the local cluster with another MaxArraySize."""
    script = Path(__file__).resolve().parent.parent / "slurm" / "local-cluster.sh"
    environment = {**os.environ, "LOCAL_SLURM_MAX_ARRAY_SIZE": str(max_array_size)}
    subprocess.run([str(script), "start"], env=environment, check=True, stdout=subprocess.DEVNULL)


def measure(shards: int, models: Path | None) -> tuple[float, float, float, float]:
    """Both measurements, printed as they come."""
    window = max_array_size()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as directory:
        scratch = Path(directory)
        wall, slowest, merge = stage_overhead(scratch, models)
        overhead = wall - slowest
        print(
            f"one step, 2 shards: wall {wall:.1f} s, slowest shard's work {slowest:.0f} s, "
            f"merge job {merge} s -> overhead {overhead:.1f} s (target <= {TARGET_SECONDS:g} s)"
        )
        planned, submitting, baseline = submit_many(scratch, shards)
        print(
            f"{shards} shards: planned in {planned:.1f} s, submitted as held arrays of "
            f"<= {window} in {submitting:.1f} s (plain sbatch --array of the same windows: "
            f"{baseline:.2f} s, ratio {submitting / baseline:.1f})"
        )
    return overhead, planned, submitting, baseline


if __name__ == "__main__":
    main()
