"""Runs for the driver tests: the small recipe, held journals and locks, checks of finished runs."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from laerebogen.pipeline.plan import chain, read_merge, read_plan
from laerebogen.store.run_dir import RunStore
from laerebogen.store.shards import load_manifest

# An input is kept (same id) or dropped.
ONE_TO_ONE = ("grammar", "quality", "followups", "code_check", "annotate")


def steps_of(run: Path) -> list[str]:
    """The run's steps in the order the driver ran them."""
    steps = list(chain(RunStore(run)))
    assert all(merged is not None for _, merged in steps), "a step was never merged"
    assert steps[-1][1] is not None and steps[-1][1].next is None, "the chain ends early"
    return [plan.step for plan, _ in steps]


def check_no_record_lost_or_duplicated(run: Path) -> None:
    """Every step consumed each input exactly once; every merge kept or rejected each record."""
    store = RunStore(run)
    for step in steps_of(run):
        plan = read_plan(store, step)
        assert plan is not None
        inputs: list[str] = []
        for index in range(plan.shards):
            given = [record.id for record in store.read_inputs(step, index)]
            manifest = store.manifest(step, index)
            assert manifest.inputs == len(given), (step, index)
            inputs += given
        assert len(inputs) == len(set(inputs)) == plan.inputs, step
        out = [r.id for i in range(plan.shards) for r in store.read_records(step, i)]
        kept = [record.id for record in store.read_merged(step)]
        dropped = [rejection.source_id for rejection in store.read_merge_rejects(step)]
        assert Counter(out) == Counter(kept + dropped), step
        if plan.stage in ONE_TO_ONE:
            assert set(out) <= set(inputs) and len(out) == len(set(out)), step
        merged = read_merge(store, step)
        assert merged is not None and merged.records_in == len(out)
        assert merged.kept + sum(merged.rejected.values()) == merged.records_in


def dataset_lines(run: Path) -> list[dict]:
    """The exported conversations."""
    text = (run / "dataset.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def submissions(run: Path, step: str) -> list[dict]:
    """Every recorded submission of a step's jobs (shards and merge)."""
    return json.loads((run / step / "jobs.json").read_text())["submissions"]


def shard_submissions(run: Path, step: str, index: int) -> list[dict]:
    """The recorded submissions of one shard (``MERGE`` for the merge job)."""
    return [s for s in submissions(run, step) if s["index"] == index]


def merged_manifest_exists(run: Path, step: str) -> bool:
    """Whether the merge of ``step`` wrote its merged set."""
    return load_manifest(RunStore(run).merged_paths(step)) is not None


def hold_driver_lock(run: Path) -> subprocess.Popen[str]:
    """Another process that takes the run's driver lock and keeps it until it is killed."""
    code = (
        "import sys, time\nfrom laerebogen.store.run_dir import RunStore\n"
        "with RunStore(sys.argv[1]).driver_lock():\n    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


# One round of base generation in one shard, and nothing after it but the export.
GENERATION_ONLY = (
    "generation.first_round_prompts=1",
    "generation.max_rounds=1",
    "evolution.generations=0",
    "followups.turns=0",
    "grammar.enabled=false",
    "quality.enabled=false",
    "code_check.enabled=false",
    "annotate.enabled=false",
)


def hold_journal(run: Path, step: str, index: int) -> BinaryIO:
    """Lock a shard's journal as a running writer would: its jobs fail until released."""
    journal = run / step / f"shard-{index:05d}.journal"
    journal.parent.mkdir(parents=True)
    handle = open(journal, "a+b")  # noqa: SIM115 (held by the test)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def release_after_first_failure(run: Path, step: str, handle: BinaryIO) -> threading.Thread:
    """Release a held journal once the first job of the shard has failed on it."""

    def wait_and_release() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tried = shard_submissions(run, step, 0) if (run / step / "jobs.json").exists() else []
            log = Path(tried[0]["log"]) if tried else None
            if log and log.is_file() and "being written by another process" in log.read_text():
                break
            time.sleep(0.2)
        handle.close()

    thread = threading.Thread(target=wait_and_release, daemon=True)
    thread.start()
    return thread


# The whole recipe, small: 5 one-prompt shards in the first generation round (more than the
# test cluster's MaxArraySize of 4, so SLURM splits the array), two grammar shards (an array),
# one evolution generation, annotation turned on, and every other step in one shard.
RECIPE = (
    "generation.first_round_prompts=5",
    "generation.prompts_per_shard=1",
    "generation.target=3",
    "generation.max_rounds=2",
    "grammar.records_per_shard=2",
    "quality.records_per_shard=16",
    "evolution.generations=1",
    "evolution.records_per_shard=16",
    "followups.records_per_shard=16",
    "code_check.enabled=true",
    "code_check.records_per_shard=16",
    "annotate.enabled=true",
    "annotate.records_per_shard=16",
)
