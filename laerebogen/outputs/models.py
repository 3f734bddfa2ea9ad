"""What each model of a run did, from the plans and the shard manifests: per step and over the
run, its shards, inputs, records, tokens, requests by the stage's call and rejections by reason.

A mixture shows here: each step's inputs split over its models, and where one model fails
more than another (``stats.json``'s ``models``, the card's "Models" table).
"""

from __future__ import annotations

from collections import Counter

import msgspec

from laerebogen.config.schema import Config
from laerebogen.pipeline.plan import chain
from laerebogen.stages import CPU_STAGES
from laerebogen.store.run_dir import RunStore
from laerebogen.store.shards import ShardManifest, load_manifest


class ModelWork(msgspec.Struct, kw_only=True):
    """One model's finished shards in one step, or summed over the run."""

    shards: int = 0
    inputs: int = 0
    records: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: dict[str, int] = {}  # by the stage's call: tasks, user, answer, judge, ...
    rejected: dict[str, int] = {}  # by reason

    def add(self, manifest: ShardManifest) -> None:
        """Count one finished shard."""
        self.shards += 1
        self.inputs += manifest.inputs
        self.records += manifest.outputs
        self.prompt_tokens += manifest.prompt_tokens
        self.completion_tokens += manifest.completion_tokens
        self.requests = _summed(self.requests, manifest.requests)
        self.rejected = _summed(self.rejected, manifest.rejected)


class ModelStats(msgspec.Struct, kw_only=True):
    """A ``[models.NAME]`` of the run: its directory (the model in provenance), its work over
    the run and in each step it wrote for."""

    directory: str
    total: ModelWork
    steps: dict[str, ModelWork]


def _summed(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return dict(sorted((Counter(counts) + Counter(more)).items()))


def model_stats(store: RunStore, config: Config) -> dict[str, ModelStats]:
    """Every model the run's config uses, with the finished shards of each step it ran."""
    models = {
        name: ModelStats(directory=config.model_path(name).name, total=ModelWork(), steps={})
        for name in config.models_in_use()
    }
    for plan, _ in chain(store):
        if plan.stage in CPU_STAGES:
            continue
        for index in range(plan.shards):
            manifest = load_manifest(store.output_paths(plan.step, index))
            if manifest is None:
                continue
            stats = models[plan.shard_model(config, index)]
            stats.steps.setdefault(plan.step, ModelWork()).add(manifest)
            stats.total.add(manifest)
    return models
