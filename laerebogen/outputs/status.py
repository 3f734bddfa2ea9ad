"""``laerebogen status``: how far a run got, per step, read from its small state files only.

A run can take GPU-days, and users look at it while it runs, often from a login node on a
shared file system. So the status reads only what is cheap and safe to read at any moment:
``config.toml``, each step's ``plan.json``, ``jobs.json`` and ``merge.json``, the shard
manifests and the journals of unfinished shards (without locking, see
:meth:`laerebogen.store.run_dir.RunStore.progress`). It never opens record data and never asks the
scheduler, so it cannot tell a queued or running job from one that died (``submitted``
counts every shard that had a job, finished or not).

Counting rules, also in the field docs of :class:`StepStatus`:

* records out, completion tokens: finished shards plus the committed chunks of unfinished
  ones (a journal's progress carries both);
* rejections by reason, prompt tokens, wall seconds: finished shards only (their manifest
  holds them; a journal's progress does not);
* GPU-hours: each finished shard's wall seconds times the GPUs its job asks for (its model's
  ``tensor_parallel_size``; 0 on CPU configs and for a step without a model, whose shards
  are CPU jobs), an estimate of what the shard jobs held, not of what they used.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from laerebogen.config.schema import Config
from laerebogen.outputs.export import DATASET_FILE
from laerebogen.pipeline.jobs import StepJobs, jobs_file
from laerebogen.pipeline.plan import (
    StepPlan,
    chain,
    import_step,
    read_merge,
    read_plan,
    source_rounds,
    source_targets,
)
from laerebogen.stages import CPU_STAGES
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config
from laerebogen.store.shards import load_manifest

TOP_REASONS = 3
State = Literal["planned", "running", "merging", "merged"]


class StepStatus(msgspec.Struct, frozen=True):
    """One step of a run as its state files describe it right now."""

    step: str
    stage: str
    state: State  # planned: nothing submitted or written; merging: every shard finished
    shards: int
    done: int  # shards with a manifest
    submitted: int  # shards with a job submitted, finished or not (merge jobs not counted)
    failed_attempts: int  # retries: each later submission of a shard or merge replaced a dead job
    records_in: int  # the plan's inputs
    records_out: int  # finished shards' outputs plus unfinished shards' committed outputs
    kept: int | None  # after the merge; None before it
    rejected: dict[str, int]  # by reason, from finished shards' manifests
    merge_rejected: dict[str, int]  # by reason, from the merge result
    prompt_tokens: int  # finished shards
    completion_tokens: int  # finished shards plus committed chunks of unfinished ones
    wall_seconds: float  # finished shards
    gpus_per_shard: int  # the most GPUs one of its shards asks for
    gpu_hours: float


class RunTotals(msgspec.Struct, frozen=True):
    """The sums over every step of a run (records are not summed: one step's output is the
    next step's input)."""

    steps: int
    shards: int
    done: int
    submitted: int
    failed_attempts: int
    rejected: dict[str, int]
    merge_rejected: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    wall_seconds: float
    gpu_hours: float


class SourceStatus(msgspec.Struct, frozen=True):
    """How far one source of tasks got: what it must deliver, what its merged sets kept."""

    source: str  # a base source, or import:<name>
    target: int | None  # its share of the base target; None for an import (all its rows)
    kept: int  # records its merged rounds (or the imported set) kept so far
    rounds: int  # merged rounds (an import: 1 once imported)


class StatusReport(msgspec.Struct, frozen=True):
    """What ``laerebogen status --json`` prints."""

    steps: list[StepStatus]
    total: RunTotals
    exported: bool | None = None  # None when the caller did not say
    sources: list[SourceStatus] = []


def run_status(run_dir: str | Path) -> list[StepStatus]:
    """The status of every step planned so far, in order: from ``generation-01`` along each
    merge result's ``next``, up to the first step that is not merged yet."""
    store = RunStore(run_dir)
    config = run_config(store)  # a StoreError when run_dir is not a run
    statuses = (step_status(store, plan.step, shard_gpus(config, plan)) for plan, _ in chain(store))
    return [status for status in statuses if status is not None]


def shard_gpus(config: Config, plan: StepPlan) -> list[int]:
    """The GPUs each shard of a step asks for on SLURM: its model's (none without a model)."""
    if plan.stage in CPU_STAGES:
        return [0] * plan.shards
    return [config.shard_gpus(plan.shard_model(config, index)) for index in range(plan.shards)]


def sources_status(run_dir: str | Path) -> list[SourceStatus]:
    """Each source of the run's config: the base sources with the records they must deliver
    and have kept, then the imports."""
    store = RunStore(run_dir)
    config = run_config(store)
    targets = source_targets(config)
    statuses = []
    for source, target in targets.items():
        rounds = source_rounds(store, source)
        kept = sum(kept for _, kept in rounds)
        statuses.append(SourceStatus(source, target, kept, len(rounds)))
    for name in sorted(config.sources.imports):
        merged = store.merged_manifest(import_step(name))
        kept = merged.outputs if merged else 0
        statuses.append(SourceStatus(f"import:{name}", None, kept, int(merged is not None)))
    return statuses


def sources_line(sources: Sequence[SourceStatus]) -> str:
    """One line: the records each source kept of those it must deliver."""
    return "sources (kept/to deliver): " + ", ".join(map(_source_part, sources))


def _source_part(source: SourceStatus) -> str:
    if source.target is None:
        return f"{source.source} {source.kept} ({'imported' if source.rounds else 'not yet'})"
    rounds = f"{source.rounds} round" + ("" if source.rounds == 1 else "s")
    return f"{source.source} {source.kept}/{source.target} ({rounds})"


def step_status(store: RunStore, step: str, gpus: Sequence[int]) -> StepStatus | None:
    """The status of one step, or None when it is not planned (completely) yet; ``gpus``:
    what each of its shards asks for."""
    plan = read_plan(store, step)
    if plan is None:
        return None
    merge = read_merge(store, step)
    jobs = store.read_state(jobs_file(step), StepJobs) or StepJobs()
    tries = Counter(submission.index for submission in jobs.submissions)
    done = waiting = records_out = prompt_tokens = completion_tokens = 0
    wall_seconds = gpu_seconds = 0.0
    rejected: Counter[str] = Counter()
    started = False
    for index in range(plan.shards):
        paths = store.output_paths(step, index)
        manifest = load_manifest(paths)
        progress = store.progress(step, index) if manifest is None else None
        if progress is not None and progress.done:  # it finished in between
            manifest = load_manifest(paths)
        if manifest is not None:
            done += 1
            records_out += manifest.outputs
            rejected.update(manifest.rejected)
            prompt_tokens += manifest.prompt_tokens
            completion_tokens += manifest.completion_tokens
            wall_seconds += manifest.wall_seconds
            gpu_seconds += manifest.wall_seconds * gpus[index]
            continue
        assert progress is not None
        records_out += progress.outputs
        completion_tokens += progress.completion_tokens
        started = started or progress.inputs > 0
        if index in tries:
            waiting += 1  # queued, running or dead
    state: State
    if merge is not None:
        state = "merged"
    elif done == plan.shards:
        state = "merging"
    elif done or waiting or started:
        state = "running"
    else:
        state = "planned"
    return StepStatus(
        step=step,
        stage=plan.stage,
        state=state,
        shards=plan.shards,
        done=done,
        submitted=sum(index in tries for index in range(plan.shards)),
        failed_attempts=sum(count - 1 for count in tries.values()),
        records_in=plan.inputs,
        records_out=records_out,
        kept=merge.kept if merge is not None else None,
        rejected=dict(sorted(rejected.items())),
        merge_rejected=dict(sorted(merge.rejected.items())) if merge is not None else {},
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        wall_seconds=round(wall_seconds, 3),
        gpus_per_shard=max(gpus, default=0),
        gpu_hours=round(gpu_seconds / 3600, 4),
    )


def totals(statuses: Sequence[StepStatus]) -> RunTotals:
    """The sums over ``statuses``."""
    rejected: Counter[str] = Counter()
    merge_rejected: Counter[str] = Counter()
    for status in statuses:
        rejected.update(status.rejected)
        merge_rejected.update(status.merge_rejected)
    return RunTotals(
        steps=len(statuses),
        shards=sum(s.shards for s in statuses),
        done=sum(s.done for s in statuses),
        submitted=sum(s.submitted for s in statuses),
        failed_attempts=sum(s.failed_attempts for s in statuses),
        rejected=dict(sorted(rejected.items())),
        merge_rejected=dict(sorted(merge_rejected.items())),
        prompt_tokens=sum(s.prompt_tokens for s in statuses),
        completion_tokens=sum(s.completion_tokens for s in statuses),
        wall_seconds=round(sum(s.wall_seconds for s in statuses), 3),
        gpu_hours=round(sum(s.gpu_hours for s in statuses), 4),
    )


def status_json(
    statuses: Sequence[StepStatus],
    *,
    exported: bool | None = None,
    sources: Sequence[SourceStatus] = (),
) -> bytes:
    """The steps and their totals as JSON (decodes as :class:`StatusReport`)."""
    report = StatusReport(list(statuses), totals(statuses), exported, list(sources))
    return msgspec.json.format(msgspec.json.encode(report))


def render_table(
    statuses: Sequence[StepStatus],
    *,
    exported: bool | None = None,
    sources: Sequence[SourceStatus] = (),
) -> str:
    """An aligned text table, a row per step and a total row, a line of the ``sources``
    (when given) and a footer line whether the run was exported (when ``exported`` is
    given)."""
    header = [
        "step", "state", "shards", "submitted", "retries", "in", "out", "kept",
        "tokens in", "tokens out", "GPU-h", "top rejections",
    ]  # fmt: skip
    rows = [header]
    for s in statuses:
        rows.append([
            s.step, s.state, f"{s.done}/{s.shards}", str(s.submitted), str(s.failed_attempts),
            str(s.records_in), str(s.records_out), "-" if s.kept is None else str(s.kept),
            _count(s.prompt_tokens), _count(s.completion_tokens), f"{s.gpu_hours:.2f}",
            _reasons(s.rejected, s.merge_rejected),
        ])  # fmt: skip
    total = totals(statuses)
    rows.append([
        "total", "", f"{total.done}/{total.shards}", str(total.submitted),
        str(total.failed_attempts), "", "", "", _count(total.prompt_tokens),
        _count(total.completion_tokens), f"{total.gpu_hours:.2f}",
        _reasons(total.rejected, total.merge_rejected),
    ])  # fmt: skip
    lines = _align(rows, right=range(2, 11))
    if not statuses:
        lines.insert(1, "(no step planned yet)")
    if sources:
        lines.append(sources_line(sources))
    if exported is not None:
        lines.append(f"exported: {'yes' if exported else 'no'} ({DATASET_FILE})")
    return "\n".join(lines)


def show_status(run: str, as_json: bool = False) -> None:
    """Print the status of run directory ``run`` as a table, or as JSON with ``as_json``."""
    statuses = run_status(run)
    sources = sources_status(run)
    exported = (Path(run) / DATASET_FILE).is_file()
    if as_json:
        sys.stdout.write(status_json(statuses, exported=exported, sources=sources).decode() + "\n")
    else:
        print(render_table(statuses, exported=exported, sources=sources))


def _count(value: int) -> str:
    """``value`` short: 950, 12.3k, 4.5M, 1.2G."""
    for limit, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return str(value)


def _reasons(rejected: dict[str, int], merge_rejected: dict[str, int]) -> str:
    """The most frequent rejection reasons; the merge's are marked ``merge:``."""
    counts = Counter(rejected)
    counts.update({f"merge:{reason}": count for reason, count in merge_rejected.items()})
    top = counts.most_common(TOP_REASONS)
    more = len(counts) - len(top)
    if not top:
        return "-"
    text = ", ".join(f"{reason} {count}" for reason, count in top)
    return f"{text}, +{more} more" if more else text


def _align(rows: Sequence[Sequence[str]], right: Iterable[int]) -> list[str]:
    """Rows padded to their columns' widths; columns in ``right`` are right-aligned."""
    right = set(right)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
