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
from typing import TYPE_CHECKING

from laerebogen.chunking import chunked
from laerebogen.errors import StoreError
from laerebogen.inference.cache import EngineCache
from laerebogen.log import Log, stderr_line
from laerebogen.pipeline.plan import read_plan
from laerebogen.stages import build_stage
from laerebogen.stages.core import Context, drive
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config
from laerebogen.store.shards import LiveProgress, ShardManifest, ShardWriter

if TYPE_CHECKING:
    pass

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
    stage = build_stage(plan.stage, config)
    inputs = list(store.read_inputs(step, index))
    own = EngineCache() if engines is None else engines
    try:
        with store.open_shard(step, index) as writer:
            pending = list(writer.pending(inputs))
            if writer.chunks:
                log(f"{step} shard {index}: resuming after {writer.chunks} committed chunks")
            if pending:
                loading = time.monotonic()
                writer.report(LiveProgress("loading model"))
                engine = own.get(config, stage.role)
                writer.started(time.monotonic() - loading)
                writer.report(LiveProgress("generating"))
                generate = partial(engine.generate, answered=LiveReports(writer))
                context = Context(
                    run_seed=config.seed,
                    round=plan.round,
                    shard=index,
                    attempt=attempt,
                    model=engine.name,
                )
                size = config.engine.chunk_size
                done, records, tokens, start = len(inputs) - len(pending), 0, 0, time.monotonic()
                for chunk in chunked(pending, size):
                    outcomes, funnel = drive(stage, chunk, context, generate)
                    writer.write_chunk(
                        [record for outcome in outcomes for record in outcome.records],
                        [rejection for outcome in outcomes for rejection in outcome.rejections],
                        [record.id for record in chunk],
                        prompt_tokens=funnel.prompt_tokens,
                        completion_tokens=funnel.completion_tokens,
                    )
                    writer.report(LiveProgress("generating"))  # its answers are committed now
                    done, records = done + len(chunk), records + funnel.records
                    tokens += funnel.completion_tokens
                    rate = tokens / max(time.monotonic() - start, 1e-9)
                    log(
                        f"{step} shard {index}: {done}/{len(inputs)} inputs, {records} records, "
                        f"{rate:.0f} tokens/s"
                    )
            manifest = writer.finish()
    finally:
        if engines is None:
            own.close()
    log(
        f"{step} shard {index}: finished, {manifest.inputs} inputs -> {manifest.outputs} "
        f"records, {manifest.rejected_total} rejections"
    )
    return manifest
