"""The driver: plans, submits, waits and decides; rerun it at any time to continue a run.

Everything it knows is on disk. Per step it keeps ``<step>/jobs.json``, every submission with
its job id, attempt and log, so a driver restarted after a crash or SIGKILL re-attaches to
jobs still queued or running instead of submitting them again, and submits only shards that
are neither finished nor running. A failed shard is resubmitted up to ``launch.max_retries``
times per driver run; then the driver stops with a report naming the shards, their job ids
and logs. Each driver run is a *session*: a rerun gets the full retry budget again.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from laerebogen.config.schema import Config
from laerebogen.errors import InvariantError, RunFailedError
from laerebogen.launch.task import MERGE, JobState, Launcher, Submission, Task
from laerebogen.pipeline.jobs import StepJobs, jobs_file
from laerebogen.pipeline.merge import merge_summary
from laerebogen.pipeline.plan import (
    MergeResult,
    StepPlan,
    plan_first,
    plan_next,
    read_merge,
    read_plan,
)
from laerebogen.seeds import SEED_STAGE, SeedTask, load_seeds, seed_examples
from laerebogen.stages import CPU_STAGES
from laerebogen.store.run_dir import RunStore

LOG_TAIL_LINES = 3
# While waiting, the driver checks the files of up to this many running jobs this often.
MAX_WATCHED_JOBS = 64
FILE_POLL_SECONDS = 0.25


def import_seeds(store: RunStore, seed_file: Path, tasks: list[SeedTask] | None = None) -> str:
    """Keep a copy of the seed tasks in the run (once); returns what happened."""
    if store.is_done(SEED_STAGE, 0):
        return f"seeds: done already ({store.manifest(SEED_STAGE, 0).outputs} records)"
    if tasks is None:
        tasks = load_seeds(seed_file)
    with store.open_shard(SEED_STAGE, 0) as writer:
        writer.write_chunk(list(seed_examples(tasks)), consumed=[task.id for task in tasks])
        manifest = writer.finish()
    return f"seeds: imported {manifest.outputs} records from {manifest.inputs} tasks ({seed_file})"


class StatusLine:
    """A live line per step: a rewritten line on a terminal, else a line whenever it changes."""

    def __init__(self, stream: TextIO, quiet_seconds: float = 60.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.quiet_seconds = quiet_seconds
        self._last = ""
        self._last_time = 0.0

    def show(self, text: str, key: str) -> None:
        """Show ``text``; off a terminal only when ``key`` changed or a while has passed."""
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif key != self._last or now - self._last_time >= self.quiet_seconds:
            self.stream.write(text + "\n")
            self._last, self._last_time = key, now
        self.stream.flush()

    def end(self) -> None:
        """Finish the live line so the next output starts on a fresh line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._last = ""


class Driver:
    """Runs the recipe over one run directory with one launcher."""

    def __init__(
        self,
        config: Config,
        store: RunStore,
        launcher: Launcher,
        *,
        out: TextIO = sys.stderr,
        poll_seconds: float = 2.0,
    ) -> None:
        self.config = config
        self.store = store
        self.launcher = launcher
        self.out = out
        self.status = StatusLine(out)
        self.poll_seconds = poll_seconds
        self.session = uuid.uuid4().hex[:12]

    def say(self, line: str) -> None:
        """One line of progress for the user."""
        self.out.write(line + "\n")
        self.out.flush()

    def run(self) -> int:
        """Every step from the first unfinished one to the export; returns how many ran."""
        ran = 0
        plan: StepPlan | None = plan_first(self.store, self.config)
        while plan is not None:
            result = read_merge(self.store, plan.step)
            if result is None:
                result = self.run_step(plan)
                ran += 1
            else:
                self.say(f"{plan.step}: done already ({result.kept} records kept)")
            plan = self._following(plan, result)
        return ran

    def _following(self, plan: StepPlan, result: MergeResult) -> StepPlan | None:
        """The step after ``plan``; planned again when its directory was deleted (what a
        damaged input shard's message advises)."""
        if result.next is None:
            return None
        following = read_plan(self.store, result.next)
        if following is None:
            self.say(f"{result.next}: not planned (its directory is gone); planning it again")
            following = plan_next(self.store, self.config, plan)
        if following is None or following.step != result.next:
            raise InvariantError(f"{plan.step}: merged with {result.next} next, but planned "
                                 f"{following.step if following else 'nothing'}")  # fmt: skip
        return following

    def run_step(self, plan: StepPlan) -> MergeResult:
        """Run a step's shards, then its merge job; returns the merge result."""
        start = time.monotonic()
        noun = "shard" if plan.shards == 1 else "shards"
        self.say(f"{plan.step}: {plan.inputs} inputs in {plan.shards} {noun} ({plan.stage})")
        self.complete(plan, range(plan.shards), lambda index: self.store.is_done(plan.step, index))
        self.complete(plan, [MERGE], lambda _: read_merge(self.store, plan.step) is not None)
        result = read_merge(self.store, plan.step)
        assert result is not None
        self.say(merge_summary(result) + f" ({time.monotonic() - start:.0f} s)")
        return result

    def complete(self, plan: StepPlan, indices: Sequence[int], done: Callable[[int], bool]) -> None:
        """Submit, re-attach and retry jobs until each of ``indices`` is done."""
        jobs = self.store.read_state(jobs_file(plan.step), StepJobs) or StepJobs()
        reported: set[str] = set()
        start = Progress.of(self.store, plan, clock=time.monotonic())
        while True:
            remaining = [index for index in indices if not done(index)]
            if not remaining:
                if list(indices) != [MERGE]:
                    self._show(plan, indices, {}, [], start)
                self.status.end()
                return
            latest = {s.index: s for s in jobs.submissions}
            watched = [latest[index] for index in remaining if index in latest]
            states = self.launcher.states(watched)
            active = {s.index: states[s.job_id] for s in watched if states[s.job_id].active}
            for submission in watched:
                state = states[submission.job_id]
                if state.active or submission.job_id in reported or done(submission.index):
                    continue
                reported.add(submission.job_id)
                self._report_failure(plan, submission, state)
            tries = {index: 0 for index in remaining}
            for submission in jobs.submissions:
                if submission.session == self.session and submission.index in tries:
                    tries[submission.index] += 1
            budget = 1 + self.config.launch.max_retries
            waiting = [i for i in remaining if i not in active and tries[i] < budget]
            exhausted = [i for i in remaining if i not in active and tries[i] >= budget]
            if exhausted and not active and not waiting:
                self.status.end()
                raise RunFailedError(self.failure_report(plan, exhausted, jobs, states))
            submit = waiting[: self.launcher.free_slots()]
            if submit:
                tasks = [self._task(plan, index, jobs) for index in submit]
                jobs.submissions.extend(self.launcher.submit(tasks, self.session))
                self.store.write_state(jobs_file(plan.step), jobs)
                continue  # show the new jobs as running at once
            self._show(plan, indices, active, exhausted, start)
            if not self.launcher.synchronous:
                self._wait([index for index in remaining if index in active], done)

    def _task(self, plan: StepPlan, index: int, jobs: StepJobs) -> Task:
        """The next attempt of shard ``index`` (or the merge) of ``plan``'s step; merges and
        the shards of a step without a model need no GPU; a shard's resources follow its model."""
        attempt = 1 + max((s.attempt for s in jobs.submissions if s.index == index), default=-1)
        cpu = index == MERGE or plan.stage in CPU_STAGES
        model = "" if cpu else plan.shard_model(self.config, index)
        return Task(str(self.store.root), plan.step, index, attempt, cpu=cpu, model=model)

    def _wait(self, running: Sequence[int], done: Callable[[int], bool]) -> None:
        """Sleep until the next look at the jobs, or until a running job's files say it
        finished (a stat per job, so only for a few jobs: shared file systems are slow)."""
        deadline = time.monotonic() + self.poll_seconds
        watch = len(running) <= MAX_WATCHED_JOBS
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, FILE_POLL_SECONDS))
            if watch and any(done(index) for index in running):
                return

    def _report_failure(self, plan: StepPlan, submission: Submission, state: JobState) -> None:
        task = Task(str(self.store.root), plan.step, submission.index, submission.attempt)
        self.status.end()
        self.say(
            f"{task.label}: job {submission.job_id} ended without finishing ({state.detail}); "
            f"log {submission.log}"
        )

    def _show(
        self,
        plan: StepPlan,
        indices: Sequence[int],
        active: dict[int, JobState],
        failed: Sequence[int],
        start: Progress,
    ) -> None:
        if list(indices) == [MERGE]:
            self.status.show(f"{plan.step}: merging", "merge")
            return
        now = Progress.of(self.store, plan, clock=time.monotonic())
        phases: Counter[str] = Counter()
        answered = asked = live_tokens = 0
        for index, state in active.items():
            live = self.store.live(plan.step, index)
            if live is None:
                phases["queued" if state.detail.startswith("PENDING") else "starting"] += 1
                continue
            phases[live.phase] += 1
            answered, asked = answered + live.answered, asked + live.asked
            live_tokens += live.completion_tokens
        elapsed = now.clock - start.clock
        tokens = now.completion_tokens + live_tokens - start.completion_tokens
        counts = ", ".join(
            [f"{now.done}/{plan.shards} done"]
            + [f"{count} {phase}" for phase, count in sorted(phases.items())]
            + ([f"{len(failed)} failed"] if failed else [])
        )
        parts = [f"{plan.step}: shards {counts}"]
        if asked:
            parts.append(f"{answered}/{asked} answered")
        parts.append(f"{now.outputs} records")
        parts.append(f"{tokens / elapsed if elapsed > 0 else 0:.0f} tokens/s")
        parts.append(f"{elapsed:.0f} s" + now.time_left(start, plan.inputs))
        self.status.show(" | ".join(parts), counts)

    def failure_report(
        self,
        plan: StepPlan,
        indices: Sequence[int],
        jobs: StepJobs,
        states: dict[str, JobState],
    ) -> str:
        """Which jobs failed, with their job ids, states, logs and the end of each log."""
        budget = 1 + self.config.launch.max_retries
        lines = [f"{plan.step}: {len(indices)} job(s) failed {budget} time(s); the run stopped."]
        for index in indices:
            mine = [s for s in jobs.submissions if s.index == index]
            label = Task("", plan.step, index, 0).label
            if plan.models and index != MERGE:  # a mixture: which model's shard failed
                label += f" ([models.{plan.models[index]}])"
            ids = ", ".join(s.job_id for s in mine[-budget:])
            last = mine[-1]
            detail = states.get(last.job_id, JobState(False, "ended")).detail
            lines.append(f"  {label}: jobs {ids} (last: {detail}); log {last.log}")
            lines += [f"    | {line}" for line in _tail(last.log)]
        lines.append(
            "Fix the cause and run the same command again: finished shards and committed "
            "chunks are kept."
        )
        return "\n".join(lines)


class Progress(NamedTuple):
    """A step's committed progress at one moment: what rates and time left are made of."""

    clock: float
    done: int
    inputs: int
    outputs: int
    completion_tokens: int

    @classmethod
    def of(cls, store: RunStore, plan: StepPlan, *, clock: float) -> Progress:
        shards = [store.progress(plan.step, index) for index in range(plan.shards)]
        return cls(
            clock,
            sum(p.done for p in shards),
            sum(p.inputs for p in shards),
            sum(p.outputs for p in shards),
            sum(p.completion_tokens for p in shards),
        )

    def time_left(self, start: Progress, total_inputs: int) -> str:
        """``, about N min left`` at the rate inputs were committed since ``start``; empty
        until one chunk was committed (a shard commits after each ``engine.chunk_size``)."""
        committed = self.inputs - start.inputs
        left = total_inputs - self.inputs
        if committed <= 0 or left <= 0:
            return ""
        seconds = left * (self.clock - start.clock) / committed
        return (
            f", about {seconds / 60:.0f} min left"
            if seconds >= 90
            else f", about {seconds:.0f} s left"
        )


def _tail(path: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def drive(config: Config, store: RunStore, launcher: Launcher, out: TextIO) -> int:
    """Run the driver; when Ctrl-C or SIGTERM stops it, say what became of the jobs."""
    interrupted = False
    try:
        driver = Driver(config, store, launcher, out=out, poll_seconds=config.launch.poll_seconds)
        return driver.run()
    except (KeyboardInterrupt, SystemExit):
        interrupted = True
        raise
    finally:
        jobs = launcher.close()
        if interrupted:
            out.write(
                f"\n{jobs}; run the same command again to continue (finished shards and "
                "committed chunks are kept)\n"
            )
