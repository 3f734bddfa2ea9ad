"""Checks of a finished run shared by the driver tests of every executor."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from laerebogen.launch.task import MERGE
from laerebogen.pipeline.plan import chain, read_merge, read_plan
from laerebogen.store.run_dir import RunStore
from laerebogen.store.shards import load_manifest

ONE_TO_ONE = ("grammar", "quality", "followups")  # an input is kept (same id) or dropped


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


__all__ = ["MERGE"]
