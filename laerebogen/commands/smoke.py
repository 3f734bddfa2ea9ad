"""A smoke run: every step of a recipe on a few records, and what the full run would cost.

On a cluster a broken model path, prompt or time limit should cost minutes, not a day. So
``laerebogen dataset --config C --smoke N`` runs the recipe of ``C`` with its real models,
executor and resources, but for a base set of ``N`` records (``generation.target = N``,
``N`` prompts in the first round, at most two rounds), into its own run directory beside the
real one (``<run>.smoke``). It ends with a table per step, measured from the smoke run's own
files, and a projection of the full run.

How the projection extrapolates: every step's inputs scale with the base set (the plan feeds
each step the survivors of the one before it, and the base set is capped at the target), so
the full run's inputs of a step are the smoke run's times ``target / base``, where ``base`` is
the number of base records the smoke run kept. A step's compute is its inputs times the
seconds per input measured in its shards without model start-up; its jobs are its inputs over
the step's records (or prompts) per shard, each paying the start-up measured; its wall-clock is
its jobs in waves of the executor's parallelism, plus the merge scaled by the inputs. Job-hours
times ``slurm.gpu_job.gpus`` are GPU-hours on SLURM; on the local executor they are CPU-hours
(times the machine's cores), the projection of a CPU run. The smoke run's batches hold at most
``N`` requests while a full shard keeps ``max_num_seqs`` in flight, so measured throughput is
low and the projection errs high: an upper bound, not an estimate of the mean.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Config
from laerebogen.launch.task import MERGE
from laerebogen.pipeline.jobs import StepJobs, jobs_file
from laerebogen.pipeline.plan import base_records, chain, inputs_per_shard, merge_file
from laerebogen.stages import CPU_STAGES
from laerebogen.store.run_dir import RunStore

SMOKE_RECORDS = 8
SMOKE_ROUNDS = 2


def smoke_dir(run_dir: Path) -> Path:
    """Where the smoke run of ``run_dir`` lives: beside it, never inside it."""
    return run_dir.with_name(f"{run_dir.name}.smoke")


def smoke_config(config: Config, records: int) -> Config:
    """``config`` for a base set of ``records``: one prompt per record wanted in the first round
    and a second round if that was too few; everything else as configured."""
    generation = msgspec.structs.replace(
        config.generation,
        target=records,
        first_round_prompts=records,
        max_rounds=min(SMOKE_ROUNDS, config.generation.max_rounds),
    )
    name = f"{config.name}.smoke" if config.name else "smoke"
    return msgspec.structs.replace(config, name=name, generation=generation)


class StepCost(NamedTuple):
    """One step of the smoke run as measured, and the full run's step projected from it."""

    step: str
    inputs: int
    kept: int
    wall_seconds: float  # first submission to the merge's result
    startup_seconds: float  # the slowest shard's model loading
    compute_seconds: float  # the shards' work without start-up, summed
    prompt_tokens: int
    completion_tokens: int
    rejected: dict[str, int]  # shards' and merge's, by reason
    full_inputs: int
    full_jobs: int
    full_job_hours: float
    full_wall_hours: float
    model: bool = True  # its shards run a model (else CPU jobs, which hold no GPU)

    @property
    def tokens_in_per_second(self) -> float:
        return self.prompt_tokens / self.compute_seconds if self.compute_seconds else 0.0

    @property
    def tokens_out_per_second(self) -> float:
        return self.completion_tokens / self.compute_seconds if self.compute_seconds else 0.0


class Projection(NamedTuple):
    """The smoke run's steps and the full run they project to."""

    steps: list[StepCost]
    base: int  # base records the smoke run kept
    target: int
    scale: float
    resource: str  # "GPU-hours" or "CPU-hours"
    resource_per_job: int  # GPUs per shard job, or cores of the machine
    parallelism: int

    def step_hours(self, step: StepCost) -> float:
        """A step's GPU- or CPU-hours; a step without a model holds no GPU."""
        if self.resource == "GPU-hours" and not step.model:
            return 0.0
        return step.full_job_hours * self.resource_per_job

    @property
    def resource_hours(self) -> float:
        return sum(self.step_hours(step) for step in self.steps)

    @property
    def wall_hours(self) -> float:
        return sum(step.full_wall_hours for step in self.steps)


def project(store: RunStore, smoke: Config, full: Config, executor: str) -> Projection:
    """Measure every merged step of the smoke run in ``store`` and project ``full``'s run."""
    base = base_records(store, smoke) or 1
    scale = full.generation.target / base
    slurm = executor == "slurm"
    parallelism = full.slurm.array_parallelism if slurm else full.launch.local_parallelism
    steps = []
    for plan, merged in chain(store):
        if merged is None:
            continue
        manifests = [store.manifest(plan.step, index) for index in range(plan.shards)]
        startup = max((m.startup_seconds for m in manifests), default=0.0)
        compute = sum(max(m.wall_seconds - m.startup_seconds, 0.0) for m in manifests)
        rejected: Counter[str] = Counter(merged.rejected)
        for manifest in manifests:
            rejected.update(manifest.rejected)
        jobs = store.read_state(jobs_file(plan.step), StepJobs) or StepJobs()
        submitted = [job.submitted for job in jobs.submissions if job.index != MERGE]
        finished = (store.root / merge_file(plan.step)).stat().st_mtime
        wall = finished - min(submitted) if submitted else merged.seconds
        full_inputs = math.ceil(plan.inputs * scale)
        per_shard = inputs_per_shard(full, plan.stage)
        full_jobs = math.ceil(full_inputs / per_shard) if full_inputs else 0
        per_input = compute / plan.inputs if plan.inputs else 0.0
        job_seconds = full_inputs * per_input + full_jobs * startup
        merge_seconds = merged.seconds * scale
        waves = math.ceil(full_jobs / parallelism) if full_jobs else 0
        shard_seconds = min(full_inputs, per_shard) * per_input + startup
        steps.append(
            StepCost(
                step=plan.step,
                inputs=plan.inputs,
                kept=merged.kept,
                wall_seconds=round(wall, 1),
                startup_seconds=startup,
                compute_seconds=compute,
                prompt_tokens=sum(m.prompt_tokens for m in manifests),
                completion_tokens=sum(m.completion_tokens for m in manifests),
                rejected=dict(rejected.most_common()),
                full_inputs=full_inputs,
                full_jobs=full_jobs,
                full_job_hours=job_seconds / 3600,
                full_wall_hours=(waves * shard_seconds + merge_seconds) / 3600,
                model=plan.stage not in CPU_STAGES,
            )
        )
    gpus = full.slurm.gpu_job.gpus
    resource, per_job = (
        ("GPU-hours", gpus) if slurm and gpus else ("CPU-hours", os.cpu_count() or 1)
    )
    return Projection(steps, base, full.generation.target, scale, resource, per_job, parallelism)


def _hours(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:,.1f} h"


def projection_summary(projection: Projection, full: Config) -> str:
    """The table per step and the projection, for the end of a smoke run."""
    header = (
        f"{'step':<14} {'wall':>7} {'start-up':>8} {'tok/s in':>9} {'tok/s out':>9} "
        f"{'in -> kept':>11}  rejections by reason"
    )
    lines = [f"smoke run: {projection.base} base records; per step:", header]
    for step in projection.steps:
        reasons = ", ".join(f"{reason} {count}" for reason, count in step.rejected.items())
        lines.append(
            f"{step.step:<14} {step.wall_seconds:>6.0f}s {step.startup_seconds:>7.0f}s "
            f"{step.tokens_in_per_second:>9.0f} {step.tokens_out_per_second:>9.0f} "
            f"{f'{step.inputs} -> {step.kept}':>11}  {reasons or '-'}"
        )
    lines += [
        "",
        f"projected full run ({full.name or 'config'}: target {projection.target:,}, every "
        f"step's inputs x {projection.scale:,.0f}), per step:",
        f"{'step':<14} {'inputs':>10} {'jobs':>6} {projection.resource:>10} {'wall-clock':>11}",
    ]
    for step in projection.steps:
        lines.append(
            f"{step.step:<14} {step.full_inputs:>10,} {step.full_jobs:>6,} "
            f"{projection.step_hours(step):>10,.1f} "
            f"{_hours(step.full_wall_hours):>11}"
        )
    kind = (
        f"{projection.resource_per_job} GPUs per shard job"
        if projection.resource == "GPU-hours"
        else f"a CPU run: job-hours x {projection.resource_per_job} cores of this machine"
    )
    lines += [
        f"total: {projection.resource_hours:,.1f} {projection.resource} ({kind}), about "
        f"{_hours(projection.wall_hours)} wall-clock with {projection.parallelism} jobs at once.",
        "An upper bound: the smoke run's batches are small, full shards run faster per token; "
        "the later steps' sizes follow the smoke run's survival rates (laerebogen/smoke.py).",
    ]
    return "\n".join(lines)
