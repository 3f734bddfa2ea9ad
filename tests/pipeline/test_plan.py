"""The step chain: how many prompts a round asks for, how steps are sharded and chained.

Run directories are built by hand with the store (inputs, merged sets), so every decision of
the planner is checked against known merged sets without an engine.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.pipeline.plan import (
    MAX_ROUND_GROWTH,
    ROUND_MARGIN,
    MergeResult,
    StepPlan,
    assign_model,
    chain,
    dedup_pool,
    final_records,
    later_steps,
    merge_file,
    plan_first,
    plan_next,
    read_plan,
    round_size,
    shuffled_pool,
    source_targets,
    stages_to_run,
    write_step,
)
from laerebogen.records import Example
from laerebogen.seeds import load_seeds, seed_examples
from laerebogen.sources.corpus import corpus_passages
from laerebogen.stages.generation import prompt_slots
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.records import make_example

# target 24, first round 4 prompts, at most 4 rounds, 2 prompts per shard, 8 records per shard
# in the later stages, 2 evolution generations, follow-ups on.
TINY = load_config("tiny")
BARE = ["grammar.enabled=false", "quality.enabled=false"]
SELF = "self_instruct"


def records(stage: str, count: int, start: int = 0) -> list[Example]:
    """``count`` records whose ids are unique to ``stage``."""
    return [make_example(index, stage=stage) for index in range(start, start + count)]


def ids(examples: Sequence[Example]) -> list[str]:
    return [example.id for example in examples]


def merge_by_hand(store: RunStore, step: str, kept: Sequence[Example]) -> None:
    """Write the merged set of ``step`` as its merge job would, without screening."""
    with store.open_merged(step) as writer:
        writer.write_chunk(kept, [], consumed=ids(kept))
        writer.finish()


def input_ids(store: RunStore, planned: StepPlan) -> list[str]:
    """The ids of every input shard of a planned step, in shard order."""
    return [
        record.id
        for index in range(planned.shards)
        for record in store.read_inputs(planned.step, index)
    ]


def shard_sizes(store: RunStore, planned: StepPlan) -> list[int]:
    return [len(list(store.read_inputs(planned.step, i))) for i in range(planned.shards)]


def new_run(tmp_path: Path, config: Config = TINY, name: str = "run") -> RunStore:
    return start_run(config, tmp_path / name)


# ---------------------------------------------------------------- round_size


def test_round_size_restarts_at_the_first_round_size_when_the_last_round_kept_nothing() -> None:
    assert round_size(TINY, SELF, [(4, 0)]) == TINY.generation.first_round_prompts == 4
    # Only the last round's yield counts: an earlier productive round does not help.
    assert round_size(TINY, SELF, [(4, 8), (9, 0)]) == 4


def test_round_size_asks_for_the_missing_records_at_the_last_yield_with_a_margin() -> None:
    # 16 records missing at 2 records per prompt: 8 prompts, 8.8 with the margin -> 9.
    assert round_size(TINY, SELF, [(4, 8)]) == math.ceil(16 * 4 / 8 * ROUND_MARGIN) == 9
    # Missing counts over all rounds (3), the yield is the last round's (4 prompts a record).
    assert round_size(TINY, SELF, [(4, 16), (20, 5)]) == math.ceil(3 * 4 * ROUND_MARGIN) == 14


def test_round_size_is_capped_and_never_below_one_shard() -> None:
    cap = MAX_ROUND_GROWTH * TINY.generation.first_round_prompts
    shard = TINY.generation.prompts_per_shard
    assert round_size(TINY, SELF, [(4, 1)]) == cap == 16  # 102 wanted
    assert round_size(TINY, SELF, [(4, 23)]) == shard == 2  # ceil(0.19)
    assert round_size(TINY, SELF, [(4, 24)]) == shard  # nothing missing
    assert round_size(TINY, SELF, [(4, 40)]) == shard  # more than the target: a negative need
    # A first round smaller than a shard bounds it instead.
    small_first = load_config("tiny", ["generation.first_round_prompts=1"])
    assert round_size(small_first, SELF, [(1, 23)]) == 1


# ---------------------------------------------------------------- later_steps


def test_later_steps_of_the_tiny_recipe() -> None:
    assert later_steps(TINY) == [
        ("grammar", "grammar", 0),
        ("quality", "quality", 0),
        ("evolution-01", "evolution", 1),
        ("evolution-02", "evolution", 2),
        ("followups", "followups", 0),
    ]


def test_later_steps_leave_out_disabled_stages() -> None:
    assert later_steps(load_config("tiny", BARE)) == [
        ("evolution-01", "evolution", 1),
        ("evolution-02", "evolution", 2),
        ("followups", "followups", 0),
    ]
    assert later_steps(load_config("tiny", ["evolution.generations=0"])) == [
        ("grammar", "grammar", 0),
        ("quality", "quality", 0),
        ("followups", "followups", 0),
    ]
    assert later_steps(load_config("tiny", ["followups.turns=0"]))[-1] == (
        "evolution-02",
        "evolution",
        2,
    )
    nothing = [*BARE, "evolution.generations=0", "followups.turns=0"]
    assert later_steps(load_config("tiny", nothing)) == []


# ---------------------------------------------------------------- write_step


def test_plan_first_writes_prompt_slots_in_shards_of_the_configured_size(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    planned = plan_first(store, TINY)
    assert planned == StepPlan("generation-01", "generation", 1, shards=2, inputs=4)
    assert read_plan(store, "generation-01") == planned
    assert shard_sizes(store, planned) == [2, 2]
    assert input_ids(store, planned) == ids(prompt_slots(1, 4))


def test_write_step_shards_records_and_writes_the_plan_last(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    given = records("generation", 20)
    planned = write_step(store, TINY, ("grammar", "grammar", 0), given)
    assert planned == StepPlan("grammar", "grammar", 0, shards=3, inputs=20)
    assert shard_sizes(store, planned) == [8, 8, 4]
    assert [list(store.read_inputs("grammar", i)) for i in range(3)] == [
        given[:8],
        given[8:16],
        given[16:],
    ]
    # The plan is written after the inputs: it is the newest file of the step.
    plan_time = (tmp_path / "run" / "grammar" / "plan.json").stat().st_mtime_ns
    input_times = [store.input_paths("grammar", i).manifest.stat().st_mtime_ns for i in range(3)]
    assert max(input_times) <= plan_time


# A mixture: grammar's records split 50/50 over the two models by the hash of their ids.
MIXTURE = load_config(
    "tiny",
    ["models.other.path='other'", "grammar.model={ instruct = 0.5, other = 0.5 }"],
)


def test_assign_model_follows_the_weights_and_draws_the_same_every_time() -> None:
    weights = {"a": 0.7, "b": 0.2, "c": 0.1}
    drawn = [assign_model(weights, 7, "grammar", f"r{index}") for index in range(10_000)]
    counts = Counter(drawn)
    for name, weight in weights.items():
        assert abs(counts[name] / 10_000 - weight) < 0.02, counts
    assert drawn == [assign_model(weights, 7, "grammar", f"r{index}") for index in range(10_000)]
    # Another step or another run seed draws again: a record's model is per step.
    other_step = [assign_model(weights, 7, "quality", f"r{index}") for index in range(10_000)]
    other_seed = [assign_model(weights, 8, "grammar", f"r{index}") for index in range(10_000)]
    assert drawn not in (other_step, other_seed)
    assert {assign_model({"only": 1.0}, 7, "grammar", f"r{i}") for i in range(50)} == {"only"}
    assert assign_model({}, 7, "code_check", "r1") == ""  # a stage without a model


def test_a_mixture_shards_each_models_records_apart(tmp_path: Path) -> None:
    store = new_run(tmp_path, MIXTURE)
    given = records("generation", 40)
    planned = write_step(store, MIXTURE, ("grammar", "grammar", 0), given)
    assert planned.inputs == 40 and len(planned.models) == planned.shards
    assert set(planned.models) == {"instruct", "other"}
    by_model: dict[str, list[Example]] = {"instruct": [], "other": []}
    for index in range(planned.shards):
        shard = list(store.read_inputs("grammar", index))
        model = planned.shard_model(MIXTURE, index)
        assert model == planned.models[index] and 0 < len(shard) <= 8
        assert {
            assign_model({"instruct": 0.5, "other": 0.5}, 7, "grammar", r.id) for r in shard
        } == {model}
        by_model[model] += shard
    # Every record once, each model's in the order given.
    assert sorted(ids(by_model["instruct"] + by_model["other"])) == sorted(ids(given))
    for model, shard_records in by_model.items():
        assert ids(shard_records) == [r.id for r in given if r in shard_records], model
    # Planned again (a rerun, another process): the same shards.
    again = write_step(
        new_run(tmp_path, MIXTURE, "again"), MIXTURE, ("grammar", "grammar", 0), given
    )
    assert again == planned


def test_a_single_model_step_keeps_the_plan_it_had_before_mixtures(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    planned = write_step(store, TINY, ("grammar", "grammar", 0), records("generation", 10))
    assert planned.models == ()
    assert b"models" not in (tmp_path / "run" / "grammar" / "plan.json").read_bytes()
    assert [planned.shard_model(TINY, index) for index in range(planned.shards)] == ["instruct"] * 2


def test_a_planned_step_never_changes(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    first = write_step(store, TINY, ("grammar", "grammar", 0), records("generation", 10))
    files = sorted((tmp_path / "run" / "grammar" / "inputs").iterdir())
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files}
    again = write_step(store, TINY, ("grammar", "grammar", 0), records("other", 30))
    assert again == first == StepPlan("grammar", "grammar", 0, shards=2, inputs=10)
    assert sorted((tmp_path / "run" / "grammar" / "inputs").iterdir()) == files
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files} == before
    assert input_ids(store, again) == ids(records("generation", 10))


def test_a_step_without_records_is_planned_with_no_shards(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    planned = write_step(store, TINY, ("quality", "quality", 0), [])
    assert planned == StepPlan("quality", "quality", 0, shards=0, inputs=0)
    assert read_plan(store, "quality") == planned
    assert not store.input_paths("quality", 0).manifest.exists()


# ---------------------------------------------------------------- plan_next


def test_a_round_short_of_the_target_plans_the_next_round(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    first = plan_first(store, TINY)
    merge_by_hand(store, "generation-01", records("round-1", 8))
    second = plan_next(store, TINY, first)
    count = round_size(TINY, SELF, [(4, 8)])
    assert count == 9
    assert second == StepPlan("generation-02", "generation", 2, shards=5, inputs=count)
    assert input_ids(store, second) == ids(prompt_slots(2, count))
    assert plan_next(store, TINY, first) == second  # the merge job may run again


def test_reaching_the_target_plans_grammar_with_every_round_capped_at_the_target(
    tmp_path: Path,
) -> None:
    store = new_run(tmp_path)
    first = plan_first(store, TINY)
    round_1, round_2 = records("round-1", 8), records("round-2", 20)
    merge_by_hand(store, "generation-01", round_1)
    second = plan_next(store, TINY, first)
    assert second is not None
    merge_by_hand(store, "generation-02", round_2)
    grammar = plan_next(store, TINY, second)
    assert grammar == StepPlan("grammar", "grammar", 0, shards=3, inputs=24)
    assert input_ids(store, grammar) == ids(round_1 + round_2[:16])
    # The first round merged again (its merged set was damaged) decides as it did then.
    assert plan_next(store, TINY, first) == second


def test_exactly_the_target_in_the_first_round_goes_on_to_grammar(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    first = plan_first(store, TINY)
    merge_by_hand(store, "generation-01", records("round-1", 24))
    grammar = plan_next(store, TINY, first)
    assert grammar is not None and grammar.step == "grammar" and grammar.inputs == 24
    assert read_plan(store, "generation-02") is None


def test_the_last_round_goes_on_below_the_target(tmp_path: Path) -> None:
    config = load_config("tiny", ["generation.max_rounds=1"])
    store = new_run(tmp_path, config)
    first = plan_first(store, config)
    round_1 = records("round-1", 5)
    merge_by_hand(store, "generation-01", round_1)
    grammar = plan_next(store, config, first)
    assert grammar == StepPlan("grammar", "grammar", 0, shards=1, inputs=5)
    assert input_ids(store, grammar) == ids(round_1)
    assert read_plan(store, "generation-02") is None


def merge_until(store: RunStore, config: Config, last: str) -> dict[str, list[Example]]:
    """Plan and hand-merge every step of ``config`` before ``last`` (which must be the next
    step planned); returns each step's merged set."""
    merged = {
        "generation-01": records("round-1", 24),
        "grammar": records("grammar", 20),
        "quality": records("quality", 18),
        "evolution-01": records("evolution-1", 10),
        "evolution-02": records("evolution-2", 5),
    }
    planned: StepPlan | None = plan_first(store, config)
    while planned is not None and planned.step in merged:
        merge_by_hand(store, planned.step, merged[planned.step])
        planned = plan_next(store, config, planned)
    assert planned is not None and planned.step == last
    return merged


def build_chain(store: RunStore, config: Config = TINY) -> dict[str, list[Example]]:
    """Plan and hand-merge every step of the tiny recipe before the follow-ups."""
    return merge_until(store, config, "followups")


def test_each_later_step_takes_the_merged_set_before_it(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    merged = build_chain(store)
    for step, before in [
        ("grammar", "generation-01"),
        ("quality", "grammar"),
        ("evolution-01", "quality"),
        ("evolution-02", "evolution-01"),
    ]:
        planned = read_plan(store, step)
        assert planned is not None
        assert input_ids(store, planned) == ids(merged[before]), step
    evolution_2 = read_plan(store, "evolution-02")
    assert evolution_2 == StepPlan("evolution-02", "evolution", 2, shards=2, inputs=10)


def test_followups_take_generation_0_and_every_evolution_generation_shuffled(
    tmp_path: Path,
) -> None:
    merged = build_chain(store := new_run(tmp_path))
    followups = read_plan(store, "followups")
    pool = merged["quality"] + merged["evolution-01"] + merged["evolution-02"]
    assert followups == StepPlan("followups", "followups", 0, shards=5, inputs=len(pool))
    order = input_ids(store, followups)
    assert sorted(order) == sorted(ids(pool)) and len(set(order)) == len(pool)
    assert order != ids(pool)  # shuffled, not the generations one after another
    # A second run with the same seed and the same merged sets plans the same order.
    other = new_run(tmp_path, name="other")
    build_chain(other)
    assert input_ids(other, followups) == order
    # Shuffling depends on the run's seed.
    reseeded = load_config("tiny", ["seed=8"])
    build_chain(third := new_run(tmp_path, reseeded, name="reseeded"), reseeded)
    assert input_ids(third, followups) != order
    # After follow-ups only the export is left.
    merge_by_hand(store, "followups", records("followups", 33))
    assert plan_next(store, TINY, followups) is None


def test_without_later_steps_the_last_round_leads_to_the_export(tmp_path: Path) -> None:
    config = load_config("tiny", [*BARE, "evolution.generations=0", "followups.turns=0"])
    store = new_run(tmp_path, config)
    first = plan_first(store, config)
    merge_by_hand(store, "generation-01", records("round-1", 24))
    assert plan_next(store, config, first) is None


# ---------------------------------------------------------------- final_records, dedup_pool


def test_final_records_are_the_followups_merged_set(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    build_chain(store)
    conversations = records("followups", 33)
    merge_by_hand(store, "followups", conversations)
    assert list(final_records(store, TINY)) == conversations


def test_annotation_reads_the_followups_and_its_merged_set_is_the_dataset(tmp_path: Path) -> None:
    config = load_config("tiny", ["annotate.enabled=true"])
    assert [step for step, _, _ in later_steps(config)][-2:] == ["followups", "annotate"]
    store = new_run(tmp_path, config)
    build_chain(store, config)
    followups = read_plan(store, "followups")
    assert followups is not None
    merge_by_hand(store, "followups", conversations := records("followups", 33))
    annotate = plan_next(store, config, followups)
    assert annotate == StepPlan("annotate", "annotate", 0, shards=5, inputs=33)
    assert input_ids(store, annotate) == ids(conversations)
    assert dedup_pool(store, config, annotate) is None  # annotation changes no text
    merge_by_hand(store, "annotate", annotated := records("annotate", 33))
    assert list(final_records(store, config)) == annotated
    assert plan_next(store, config, annotate) is None


def test_the_code_check_sits_between_followups_and_annotation(tmp_path: Path) -> None:
    config = load_config("tiny", ["annotate.enabled=true", "code_check.enabled=true"])
    steps = [step for step, _, _ in later_steps(config)]
    assert steps[-3:] == ["followups", "code_check", "annotate"]
    store = new_run(tmp_path, config)
    build_chain(store, config)
    followups = read_plan(store, "followups")
    assert followups is not None
    merge_by_hand(store, "followups", conversations := records("followups", 33))
    code_check = plan_next(store, config, followups)
    assert code_check == StepPlan("code_check", "code_check", 0, shards=5, inputs=33)
    assert input_ids(store, code_check) == ids(conversations)
    assert dedup_pool(store, config, code_check) is None  # the code check changes no text
    merge_by_hand(store, "code_check", checked := records("code_check", 33))
    annotate = plan_next(store, config, code_check)
    assert annotate is not None and input_ids(store, annotate) == ids(checked)
    merge_by_hand(store, "annotate", annotated := records("annotate", 33))
    assert list(final_records(store, config)) == annotated
    # Without annotation the checked conversations are the dataset.
    alone = load_config("tiny", ["code_check.enabled=true"])
    assert list(final_records(store, alone)) == checked


def test_without_followups_annotation_reads_every_generation_shuffled(tmp_path: Path) -> None:
    config = load_config("tiny", ["followups.turns=0", "annotate.enabled=true"])
    store = new_run(tmp_path, config)
    merge_until(store, config, "annotate")
    annotate = read_plan(store, "annotate")
    assert annotate is not None
    assert input_ids(store, annotate) == ids(shuffled_pool(store, config))


def test_final_records_without_followups_are_every_generation_shuffled(tmp_path: Path) -> None:
    config = load_config("tiny", ["followups.turns=0"])
    store = new_run(tmp_path, config)
    merged = {
        "generation-01": records("round-1", 24),
        "grammar": records("grammar", 20),
        "quality": records("quality", 18),
        "evolution-01": records("evolution-1", 10),
        "evolution-02": records("evolution-2", 5),
    }
    planned: StepPlan | None = plan_first(store, config)
    while planned is not None:
        merge_by_hand(store, planned.step, merged[planned.step])
        planned = plan_next(store, config, planned)
    pool = merged["quality"] + merged["evolution-01"] + merged["evolution-02"]
    final = list(final_records(store, config))
    expected = list(pool)
    random.Random(f"{config.seed}/shuffle").shuffle(expected)
    assert final == expected == shuffled_pool(store, config)
    assert final != pool


def test_final_records_without_evolution_or_followups_are_the_base_set(tmp_path: Path) -> None:
    config = load_config("tiny", ["evolution.generations=0", "followups.turns=0"])
    store = new_run(tmp_path, config)
    first = plan_first(store, config)
    merge_by_hand(store, "generation-01", records("round-1", 24))
    grammar = plan_next(store, config, first)
    assert grammar is not None
    merge_by_hand(store, "grammar", records("grammar", 20))
    quality = plan_next(store, config, grammar)
    assert quality is not None
    merge_by_hand(store, "quality", kept := records("quality", 17))
    assert plan_next(store, config, quality) is None
    assert list(final_records(store, config)) == kept


def test_dedup_pool_of_each_stage(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    seeds = list(seed_examples(load_seeds(TINY.seed_path())))
    round_1, round_2 = records("round-1", 8), records("round-2", 8)
    first = plan_first(store, TINY)
    merge_by_hand(store, "generation-01", round_1)
    second = plan_next(store, TINY, first)
    assert second is not None
    merge_by_hand(store, "generation-02", round_2)
    third = plan_next(store, TINY, second)
    assert third is not None and third.step == "generation-03"
    merge_by_hand(store, "grammar", records("grammar", 20))
    merge_by_hand(store, "quality", base := records("quality", 18))
    merge_by_hand(store, "evolution-01", evolved := records("evolution-1", 10))

    def pool(stage: str, round: int) -> list[Example] | None:
        return dedup_pool(store, TINY, StepPlan(stage, stage, round, shards=1, inputs=1))

    assert dedup_pool(store, TINY, first) == seeds
    assert dedup_pool(store, TINY, second) == seeds + round_1
    assert dedup_pool(store, TINY, third) == seeds + round_1 + round_2
    assert pool("evolution", 1) == base
    assert pool("evolution", 2) == base + evolved
    assert pool("grammar", 0) == [] and pool("quality", 0) == []
    assert pool("followups", 0) is None


def test_evolution_starts_from_the_rounds_when_grammar_and_quality_are_off(
    tmp_path: Path,
) -> None:
    config = load_config("tiny", [*BARE, "generation.max_rounds=1"])
    store = new_run(tmp_path, config)
    first = plan_first(store, config)
    merge_by_hand(store, "generation-01", round_1 := records("round-1", 6))
    evolution = plan_next(store, config, first)
    assert evolution == StepPlan("evolution-01", "evolution", 1, shards=1, inputs=6)
    assert input_ids(store, evolution) == ids(round_1)
    assert dedup_pool(store, config, evolution) == round_1


def test_stages_to_run_are_those_not_merged_yet(tmp_path: Path) -> None:
    store = new_run(tmp_path)
    recipe = ["generation", "grammar", "quality", "evolution", "followups"]
    assert stages_to_run(store, TINY) == recipe  # a fresh run
    planned: StepPlan | None = plan_first(store, TINY)
    seen = []
    while planned is not None:
        merge_by_hand(store, planned.step, records(planned.step, 24))
        following = plan_next(store, TINY, planned)
        result = MergeResult(planned.step, 24, 24, {}, following.step if following else None, 0.1)
        store.write_state(merge_file(planned.step), result)
        seen.append((planned.step, stages_to_run(store, TINY)))
        planned = following
    assert seen == [
        ("generation-01", ["grammar", "quality", "evolution", "followups"]),
        ("grammar", ["quality", "evolution", "followups"]),
        ("quality", ["evolution", "followups"]),
        ("evolution-01", ["evolution", "followups"]),
        ("evolution-02", ["followups"]),
        ("followups", []),
    ]


# ---------------------------------------------------------------- sources

MIXED = load_config(
    "tiny", ["sources.shares={self_instruct = 0.8, magpie = 0.2}", "generation.max_rounds=3"]
)


def test_source_targets_add_up_to_the_target_by_largest_remainders() -> None:
    shares = "sources.shares={self_instruct = 0.6, magpie = 0.2, grounded = 0.2}"
    config = load_config("tiny", [shares, 'sources.grounded.corpus="packaged:corpus_da"'])
    # 24 x (0.6, 0.2, 0.2) = 14.4, 4.8, 4.8: the two .8 remainders get the 2 records left.
    assert source_targets(config) == {"self_instruct": 14, "magpie": 5, "grounded": 5}
    assert source_targets(TINY) == {"self_instruct": 24}
    assert source_targets(MIXED) == {"self_instruct": 19, "magpie": 5}


def test_a_round_asks_each_short_source_in_turn_then_the_next_round(tmp_path: Path) -> None:
    store = new_run(tmp_path, MIXED)
    first = plan_first(store, MIXED)
    assert first is not None and first.step == "generation-01"
    round_1 = records("round-1", 10)
    merge_by_hand(store, "generation-01", round_1)
    magpie = plan_next(store, MIXED, first)
    # Magpie's first round: its target of 5 with the first-round margin, as prompt slots.
    assert magpie == StepPlan("magpie-01", "magpie", 1, shards=1, inputs=8)
    assert input_ids(store, magpie) == ids(prompt_slots(1, 8))
    magpie_1 = records("magpie-1", 6)
    merge_by_hand(store, "magpie-01", magpie_1)
    second = plan_next(store, MIXED, magpie)
    # Self-Instruct is still short (10 of 19); Magpie has its 5 and is not asked again.
    assert second is not None and second.step == "generation-02"
    assert dedup_pool(store, MIXED, second)[-16:] == round_1 + magpie_1
    round_2 = records("round-2", 12)
    merge_by_hand(store, "generation-02", round_2)
    grammar = plan_next(store, MIXED, second)
    assert grammar is not None and grammar.step == "grammar"
    # Each source up to its own target, Self-Instruct first.
    assert input_ids(store, grammar) == ids(round_1 + round_2[:9] + magpie_1[:5])
    assert read_plan(store, "magpie-02") is None


def test_a_source_short_after_the_others_are_done_gets_its_own_rounds(tmp_path: Path) -> None:
    store = new_run(tmp_path, MIXED)
    first = plan_first(store, MIXED)
    assert first is not None
    merge_by_hand(store, "generation-01", records("round-1", 19))
    magpie = plan_next(store, MIXED, first)
    assert magpie is not None
    merge_by_hand(store, "magpie-01", records("magpie-1", 2))
    again = plan_next(store, MIXED, magpie)
    # 3 missing at 8 slots for 2 records: 12, 13.2 with the margin -> 14 slots.
    assert again == StepPlan("magpie-02", "magpie", 2, shards=2, inputs=14)
    assert list(dedup_pool(store, MIXED, again) or [])[-21:] == [
        *records("round-1", 19),
        *records("magpie-1", 2),
    ]
    merge_by_hand(store, "magpie-02", records("magpie-2", 0))
    third = plan_next(store, MIXED, again)
    assert third is not None and third.step == "magpie-03"
    merge_by_hand(store, "magpie-03", [])
    # Rounds are over (max_rounds 3): the run goes on with what it has.
    grammar = plan_next(store, MIXED, third)
    assert grammar is not None and grammar.step == "grammar" and grammar.inputs == 21


def test_the_plan_starts_with_the_first_source_that_has_a_share(tmp_path: Path) -> None:
    config = load_config("tiny", ["sources.shares={magpie = 1.0}"])
    store = new_run(tmp_path, config)
    first = plan_first(store, config)
    assert first == StepPlan("magpie-01", "magpie", 1, shards=5, inputs=36)
    assert stages_to_run(store, config)[0] == "magpie"
    assert [plan.step for plan, _ in chain(store)] == ["magpie-01"]


def test_grounded_rounds_take_passages_no_earlier_round_had(tmp_path: Path) -> None:
    config = load_config("tiny", ["sources.shares={grounded = 1.0}", "generation.target=6"])
    store = new_run(tmp_path, config)
    first = plan_first(store, config)
    # 6 x 1.5 = 9 passages of the corpus's 15, in an order shuffled with the run's seed.
    assert first == StepPlan("grounded-01", "grounded", 1, shards=2, inputs=9)
    taken = input_ids(store, first)
    passages = ids(corpus_passages(config.sources.grounded))
    assert sorted(taken) == sorted(set(taken)) and set(taken) < set(passages)
    assert taken != passages[:9]
    merge_by_hand(store, "grounded-01", records("grounded-1", 2))
    second = plan_next(store, config, first)
    assert second is not None and second.step == "grounded-02"
    assert set(input_ids(store, second)) == set(passages) - set(taken)  # the 6 left
    merge_by_hand(store, "grounded-02", records("grounded-2", 1))
    # 3 of 6 and no passage left: the run goes on without a third round.
    grammar = plan_next(store, config, second)
    assert grammar is not None and grammar.step == "grammar" and grammar.inputs == 3
