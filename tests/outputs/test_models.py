"""Each model's work in a run: shards, inputs, records, tokens, requests by call and
rejections, per step and over the run, from the plans and the shard manifests."""

from __future__ import annotations

from pathlib import Path

from laerebogen.config.loading import load_config
from laerebogen.outputs.models import ModelWork, model_stats
from laerebogen.pipeline.plan import plan_first
from laerebogen.store.saved_config import start_run
from tests.support.records import finish_shard

MIXTURE = load_config("tiny", [
    "generation.max_rounds=1", "generation.first_round_prompts=40",
    "generation.prompts_per_shard=40", "models.other={ path = 'other' }",
    "generation.model={ base = 0.5, other = 0.5 }",
])  # fmt: skip


def test_each_models_shards_are_summed_per_step_and_over_the_run(tmp_path: Path) -> None:
    store = start_run(MIXTURE, tmp_path / "run")
    plan = plan_first(store, MIXTURE)
    assert plan is not None and sorted(plan.models) == ["base", "other"]
    inputs = {model: 0 for model in plan.models}
    for index, model in enumerate(plan.models):
        inputs[model] += len(list(store.read_inputs("generation-01", index)))
        # Each model makes its own records, tokens, requests and rejections.
        outputs, reasons = (3, ["truncated"]) if model == "base" else (5, ["not_danish"] * 2)
        finish_shard(store, "generation-01", index, outputs, reasons, prompt_tokens=100,
                     completion_tokens=10 * outputs, requests={"tasks": 20})  # fmt: skip
    stats = model_stats(store, MIXTURE)
    # Every model the config uses, by name, with its directory (the model in provenance);
    # instruct has no step in this run.
    assert {name: model.directory for name, model in stats.items()} == {
        "base": "tiny",
        "instruct": "tiny",
        "other": "other",
    }
    assert stats["instruct"].steps == {} and stats["instruct"].total == ModelWork()
    assert stats["base"].steps["generation-01"] == ModelWork(
        shards=1, inputs=inputs["base"], records=3, prompt_tokens=100, completion_tokens=30,
        requests={"tasks": 20}, rejected={"truncated": 1},
    )  # fmt: skip
    assert stats["other"].total == ModelWork(
        shards=1, inputs=inputs["other"], records=5, prompt_tokens=100, completion_tokens=50,
        requests={"tasks": 20}, rejected={"not_danish": 2},
    )  # fmt: skip
    assert inputs["base"] + inputs["other"] == 40


def test_a_shard_still_running_is_not_counted(tmp_path: Path) -> None:
    store = start_run(MIXTURE, tmp_path / "run")
    plan = plan_first(store, MIXTURE)
    assert plan is not None
    finish_shard(store, "generation-01", 0, 2)
    stats = model_stats(store, MIXTURE)
    assert sum(model.total.shards for model in stats.values()) == 1
