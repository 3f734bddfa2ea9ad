"""The shard runner: the one function every executor calls for one shard of one step.

A SLURM array task, a local subprocess, the in-process debug executor and
``laerebogen shard --run DIR --step STEP --index I`` all run :func:`run_shard`. It reads the
shard's inputs, skips those a killed earlier run already committed, drives the stage over the
rest chunk by chunk (one chunk = ``engine.chunk_size`` inputs, committed through the store
before the next starts) and finishes with the manifest. A finished shard is a no-op, and the
engine is started only when there is work, so re-running a done shard costs nothing.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import msgspec

from laerebogen.chunking import chunked
from laerebogen.config.schema import Config
from laerebogen.errors import StoreError
from laerebogen.inference.cache import EngineCache
from laerebogen.log import Log, stderr_line
from laerebogen.pipeline.plan import read_plan
from laerebogen.records import Example
from laerebogen.stages import build_stage
from laerebogen.stages.core import Context, CpuStage, Outcome, Stage, drive
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config
from laerebogen.store.shards import LiveProgress, ShardManifest, ShardWriter

LIVE_REPORT_SECONDS = 2.0


class LiveReports:
    """Passes the engine's answered counts on to progress displays, every few seconds."""

    def __init__(self, writer: ShardWriter, seconds: float = LIVE_REPORT_SECONDS) -> None:
        self.writer = writer
        self.seconds = seconds
        self._last = 0.0

    def __call__(self, answered: int, asked: int, completion_tokens: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.seconds or answered == asked:
            self._last = now
            self.writer.report(LiveProgress("generating", answered, asked, completion_tokens))


def run_shard(
    run_dir: Path,
    step: str,
    index: int,
    *,
    attempt: int = 0,
    engines: EngineCache | None = None,
    log: Log = stderr_line,
) -> ShardManifest:
    """Run shard ``index`` of ``step`` to its manifest, resuming after its last chunk."""
    store = RunStore(run_dir)
    if store.is_done(step, index):
        manifest = store.manifest(step, index)
        log(f"{step} shard {index}: done already ({manifest.outputs} records)")
        return manifest
    config = run_config(store)
    plan = read_plan(store, step)
    if plan is None:
        raise StoreError(f"{run_dir}: step {step!r} is not planned (no {step}/plan.json)")
    if not 0 <= index < plan.shards:
        raise StoreError(f"{step} has shards 0-{plan.shards - 1}, not {index}")
    stage = build_stage(plan.stage, config, run_dir)
    inputs = list(store.read_inputs(step, index))
    own = EngineCache() if engines is None else engines
    try:
        with store.open_shard(step, index) as writer:
            pending = list(writer.pending(inputs))
            if writer.chunks:
                log(f"{step} shard {index}: resuming after {writer.chunks} committed chunks")
            if pending:
                context = Context(
                    run_seed=config.seed, round=plan.round, shard=index, attempt=attempt
                )
                work = ShardWork(writer, config, context, log, label=f"{step} shard {index}",
                                 pending=pending, total=len(inputs))  # fmt: skip
                if isinstance(stage, CpuStage):
                    work.run_cpu_stage(stage)
                else:
                    work.run_model_stage(stage, plan.shard_model(config, index), own)
            manifest = writer.finish()
    finally:
        if engines is None:
            own.close()
    log(
        f"{step} shard {index}: finished, {manifest.inputs} inputs -> {manifest.outputs} "
        f"records, {manifest.rejected_total} rejections"
    )
    return manifest


class ShardWork:
    """A shard's pending inputs run chunk by chunk, each committed through the store before
    the next starts, with a log line after each."""

    def __init__(
        self,
        writer: ShardWriter,
        config: Config,
        context: Context,
        log: Log,
        *,
        label: str,
        pending: list[Example],
        total: int,
    ) -> None:
        self.writer, self.config, self.context, self.log = writer, config, context, log
        self.label = label  # the shard, as log lines name it
        self.pending = pending  # the inputs no earlier process committed
        self.total = total  # the shard's inputs
        self.done = self.records = self.tokens = 0  # of the pending inputs, in this process
        self.start = time.monotonic()

    def run_model_stage(self, stage: Stage, model: str, engines: EngineCache) -> None:
        """Load the shard's model (``[models.<model>]``), then drive the stage over the
        pending inputs."""
        loading = time.monotonic()
        self.writer.report(LiveProgress("loading model"))
        engine = engines.get(self.config, model)
        self.writer.started(time.monotonic() - loading)
        self.writer.report(LiveProgress("generating"))
        generate = partial(engine.generate, answered=LiveReports(self.writer))
        context = msgspec.structs.replace(self.context, model=engine.name)
        for chunk in chunked(self.pending, self.config.engine.chunk_size):
            outcomes, funnel = drive(stage, chunk, context, generate)
            self.commit(chunk, outcomes, funnel.prompt_tokens, funnel.completion_tokens,
                        funnel.calls)  # fmt: skip
            self.writer.report(LiveProgress("generating"))  # its answers are committed now

    def run_cpu_stage(self, stage: CpuStage) -> None:
        """Run a stage that needs no model over the pending inputs."""
        self.writer.started(0.0)
        self.writer.report(LiveProgress("running"))
        for chunk in chunked(self.pending, self.config.engine.chunk_size):
            self.commit(chunk, stage.process_chunk(chunk, self.context))

    def commit(
        self,
        chunk: list[Example],
        outcomes: list[Outcome],
        prompt_tokens: int = 0,
        completion_tokens: int | None = None,
        requests: dict[str, int] | None = None,
    ) -> None:
        """Write a chunk's records and rejections, consuming its inputs; log the progress
        (tokens/s, or records/s for a stage without a model: ``completion_tokens`` None)."""
        records = [record for outcome in outcomes for record in outcome.records]
        self.writer.write_chunk(
            records,
            [rejection for outcome in outcomes for rejection in outcome.rejections],
            [record.id for record in chunk],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens or 0,
            requests=requests,
        )
        self.done, self.records = self.done + len(chunk), self.records + len(records)
        elapsed = max(time.monotonic() - self.start, 1e-9)
        if completion_tokens is None:
            rate = f"{self.done / elapsed:.1f} records/s"
        else:
            self.tokens += completion_tokens
            rate = f"{self.tokens / elapsed:.0f} tokens/s"
        done = self.total - len(self.pending) + self.done
        self.log(f"{self.label}: {done}/{self.total} inputs, {self.records} records, {rate}")
