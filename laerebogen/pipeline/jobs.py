"""The jobs of a step: what each task runs (a shard or the merge), and the record of their
submissions that a rerun of the driver re-attaches to."""

from __future__ import annotations

from pathlib import Path

import msgspec

from laerebogen.inference.cache import EngineCache
from laerebogen.launch.task import MERGE, Submission, Task
from laerebogen.pipeline.merge import merge_step
from laerebogen.pipeline.shard_runner import run_shard
from laerebogen.store.run_dir import RunStore


class StepJobs(msgspec.Struct):
    """Every submission of a step's jobs, oldest first: what a driver re-attaches to."""

    submissions: list[Submission] = []


def jobs_file(step: str) -> str:
    """Where a step's submissions are recorded."""
    return f"{step}/jobs.json"


class JobRunner:
    """Runs a task in this process: shard ``task.index`` of its step, or the step's merge.

    With ``engines`` (the debug executor, a local worker) loaded models are kept between tasks;
    without (a SLURM array task) each shard starts its own and shuts it down. Picklable then,
    as submitit needs.
    """

    def __init__(self, engines: EngineCache | None = None) -> None:
        self.engines = engines

    def __call__(self, task: Task) -> None:
        if task.index == MERGE:
            merge_step(RunStore(task.run_dir), task.step)
        else:
            run_dir = Path(task.run_dir)
            run_shard(run_dir, task.step, task.index, attempt=task.attempt, engines=self.engines)

    def close(self) -> None:
        if self.engines is not None:
            self.engines.close()


def job_runner(executor: str) -> JobRunner:
    """What the driver hands the executor: the debug executor runs every task in the driver's
    process and keeps one engine per model; SLURM tasks each start their own."""
    return JobRunner(EngineCache() if executor == "debug" else None)
