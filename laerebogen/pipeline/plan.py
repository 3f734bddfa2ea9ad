"""The recipe as a chain of steps over a run directory: which step follows, with which inputs.

A *step* is one run of a stage over input shards: ``generation-01`` ... (rounds of base
generation), ``grammar``, ``quality``, ``evolution-01`` ... (generations), ``followups``,
``code_check``, ``annotate``.
Planning a step writes its input shards and then ``<step>/plan.json``, the marker that the
step may run; a planned step is never planned again, so shards never see their inputs change.
The merge job of a step calls :func:`plan_next` and so writes the next step's inputs; the
driver follows the chain. Everything here is decided from the configuration and the merged
sets on disk, so any process reaches the same decision.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from itertools import islice

import msgspec

from laerebogen.chunking import chunked
from laerebogen.config.schema import Config
from laerebogen.records import Example
from laerebogen.seeds import load_seeds, seed_examples
from laerebogen.store.run_dir import RunStore

# A later round asks for this much more than the last round's yield promises, because the
# growing pool rejects more near-duplicates each round.
ROUND_MARGIN = 1.1
# A later round never plans more than this many times the first round's prompts.
MAX_ROUND_GROWTH = 4
# Stages that judge the finished conversations and change no text: each takes the previous
# one's records, and their merges neither screen nor deduplicate again.
JUDGING_STAGES = ("code_check", "annotate")


class StepPlan(msgspec.Struct, frozen=True):
    """A planned step: its stage, round or generation, and how its inputs were sharded."""

    step: str
    stage: str
    round: int
    shards: int
    inputs: int


class MergeResult(msgspec.Struct, frozen=True):
    """What the merge job of a step did, and which step it planned next (None: export)."""

    step: str
    records_in: int
    kept: int
    rejected: dict[str, int]
    next: str | None
    seconds: float


def plan_file(step: str) -> str:
    """Where a step's plan lives in the run directory."""
    return f"{step}/plan.json"


def merge_file(step: str) -> str:
    """Where a step's merge result lives in the run directory."""
    return f"{step}/merge.json"


def read_plan(store: RunStore, step: str) -> StepPlan | None:
    """The plan of ``step``, or None if it was not planned (completely) yet."""
    return store.read_state(plan_file(step), StepPlan)


def read_merge(store: RunStore, step: str) -> MergeResult | None:
    """The merge result of ``step``, or None while the step is not merged, or when its
    merged set was deleted to be merged again."""
    if store.merged_manifest(step) is None:
        return None
    return store.read_state(merge_file(step), MergeResult)


def chain(store: RunStore) -> Iterator[tuple[StepPlan, MergeResult | None]]:
    """The run's planned steps in order, each with its merge result (None while it runs):
    from ``generation-01`` along each merge result's ``next``."""
    step: str | None = generation_step(1)
    seen: set[str] = set()
    while step is not None and step not in seen:
        plan = read_plan(store, step)
        if plan is None:
            return
        seen.add(step)
        merged = read_merge(store, step)
        yield plan, merged
        step = merged.next if merged is not None else None


def generation_step(round: int) -> str:
    """The step name of base-generation round ``round`` (1-based)."""
    return f"generation-{round:02d}"


def later_steps(config: Config) -> list[tuple[str, str, int]]:
    """The steps after base generation as (step, stage, round), in order."""
    steps: list[tuple[str, str, int]] = []
    if config.grammar.enabled:
        steps.append(("grammar", "grammar", 0))
    if config.quality.enabled:
        steps.append(("quality", "quality", 0))
    for generation in range(1, config.evolution.generations + 1):
        steps.append((f"evolution-{generation:02d}", "evolution", generation))
    if config.followups.turns:
        steps.append(("followups", "followups", 0))
    if config.code_check.enabled:
        steps.append(("code_check", "code_check", 0))
    if config.annotate.enabled:
        steps.append(("annotate", "annotate", 0))
    return steps


def judging_steps(config: Config) -> list[str]:
    """The enabled steps of :data:`JUDGING_STAGES`, in order."""
    return [step for step, stage, _ in later_steps(config) if stage in JUDGING_STAGES]


def stages_to_run(store: RunStore, config: Config) -> list[str]:
    """The stages whose steps are still to be merged, in order: what the run will still load
    models for. Generation is over once a merged step names a later step or nothing."""
    merged = [(plan.step, result) for plan, result in chain(store) if result is not None]
    generating = not any(
        result.next is None or not result.next.startswith("generation") for _, result in merged
    )
    done = {step for step, _ in merged}
    later = [stage for step, stage, _ in later_steps(config) if step not in done]
    return list(dict.fromkeys(["generation", *later] if generating else later))


def inputs_per_shard(config: Config, stage: str) -> int:
    """How many inputs a shard of ``stage`` gets: prompts in generation, records elsewhere."""
    if stage == "generation":
        return config.generation.prompts_per_shard
    return int(getattr(config, stage).records_per_shard)


def write_step(
    store: RunStore,
    config: Config,
    step: tuple[str, str, int],
    records: Iterable[Example],
) -> StepPlan:
    """Write the input shards of ``step`` (name, stage, round) and then its plan; a planned
    step is kept as is."""
    name, stage, round = step
    existing = read_plan(store, name)
    if existing is not None:
        return existing
    per_shard = inputs_per_shard(config, stage)
    shards = inputs = 0
    for chunk in chunked(records, per_shard):
        store.write_inputs(name, shards, chunk)
        shards += 1
        inputs += len(chunk)
    plan = StepPlan(step=name, stage=stage, round=round, shards=shards, inputs=inputs)
    store.write_state(plan_file(name), plan)
    return plan


def plan_first(store: RunStore, config: Config) -> StepPlan:
    """The first round of base generation: ``first_round_prompts`` prompt slots."""
    from laerebogen.stages.generation import prompt_slots

    slots = prompt_slots(1, config.generation.first_round_prompts)
    return write_step(store, config, (generation_step(1), "generation", 1), slots)


def round_prompts(config: Config, rounds: list[tuple[int, int]]) -> int:
    """Prompts for the next round from ``rounds`` so far, as (prompts, records kept).

    The missing records divided by the last round's yield per prompt, with a margin; the
    first round's count when nothing was kept yet. Never less than one shard's worth (or the
    first round, if smaller): a shard's start-up, loading the model, costs the same however
    few prompts it has, and a round that falls a few records short costs a whole further
    round.
    """
    settings = config.generation
    have = sum(kept for _, kept in rounds)
    prompts, kept = rounds[-1]
    if kept == 0:
        return settings.first_round_prompts
    needed = math.ceil((settings.target - have) * prompts / kept * ROUND_MARGIN)
    least = min(settings.prompts_per_shard, settings.first_round_prompts)
    return max(least, min(needed, MAX_ROUND_GROWTH * settings.first_round_prompts))


def generation_rounds(store: RunStore) -> list[tuple[int, int]]:
    """(prompts, records kept) of every merged round of base generation, in order."""
    rounds = []
    while True:
        step = generation_step(len(rounds) + 1)
        plan, merged = read_plan(store, step), store.merged_manifest(step)
        if plan is None or merged is None:
            return rounds
        rounds.append((plan.inputs, merged.outputs))


def generated(store: RunStore, config: Config) -> Iterator[Example]:
    """The records of every round of base generation in order, up to the target."""

    def every_round() -> Iterator[Example]:
        for round in range(1, len(generation_rounds(store)) + 1):
            yield from store.read_merged(generation_step(round))

    return islice(every_round(), config.generation.target)


def base_set(store: RunStore, config: Config) -> Iterator[Example]:
    """The records evolution starts from (its generation 0): after quality and grammar."""
    before = [step for step, stage, _ in later_steps(config) if stage in ("grammar", "quality")]
    return store.read_merged(before[-1]) if before else generated(store, config)


def evolved_pool(store: RunStore, config: Config, generations: int) -> Iterator[Example]:
    """Generation 0 and the first ``generations`` evolution generations, in that order."""
    yield from base_set(store, config)
    for generation in range(1, generations + 1):
        yield from store.read_merged(f"evolution-{generation:02d}")


def shuffled_pool(store: RunStore, config: Config) -> list[Example]:
    """Every generation kept, shuffled together with the run's seed."""
    records = list(evolved_pool(store, config, config.evolution.generations))
    random.Random(f"{config.seed}/shuffle").shuffle(records)
    return records


def step_inputs(store: RunStore, config: Config, step: str) -> Iterable[Example]:
    """The inputs of a step after base generation, from the merged sets before it."""
    names = [name for name, _, _ in later_steps(config)]
    position = names.index(step)
    stage = later_steps(config)[position][1]
    if stage == "followups":
        return shuffled_pool(store, config)
    if stage in JUDGING_STAGES:
        judging = judging_steps(config)
        before = judging.index(step)
        return store.read_merged(judging[before - 1]) if before else conversations(store, config)
    if position == 0:
        return generated(store, config)
    return store.read_merged(names[position - 1])


def conversations(store: RunStore, config: Config) -> Iterable[Example]:
    """The conversations as the content steps left them: the follow-ups' merged set, or all
    generations shuffled when there are no follow-ups."""
    if config.followups.turns:
        return store.read_merged("followups")
    if config.evolution.generations:
        return shuffled_pool(store, config)
    return base_set(store, config)


def final_records(store: RunStore, config: Config) -> Iterable[Example]:
    """What the dataset is made of: the conversations after the last judging step (code
    check, annotation), else :func:`conversations`."""
    judging = judging_steps(config)
    if judging:
        return store.read_merged(judging[-1])
    return conversations(store, config)


def plan_next(store: RunStore, config: Config, plan: StepPlan) -> StepPlan | None:
    """After ``plan.step`` is merged: plan the step that follows it (None: only export is left).

    After a round of base generation that is another round while the target is not reached
    and rounds are left, else the first later step.
    """
    if plan.stage == "generation":
        # Only the rounds up to this one: a round merged again decides as it did the first time.
        rounds = generation_rounds(store)[: plan.round]
        have = sum(kept for _, kept in rounds)
        if have < config.generation.target and plan.round < config.generation.max_rounds:
            from laerebogen.stages.generation import prompt_slots

            round = plan.round + 1
            slots = prompt_slots(round, round_prompts(config, rounds))
            return write_step(store, config, (generation_step(round), "generation", round), slots)
        following = 0
    else:
        names = [name for name, _, _ in later_steps(config)]
        following = names.index(plan.step) + 1
    steps = later_steps(config)
    if following >= len(steps):
        return None
    step = steps[following]
    return write_step(store, config, step, step_inputs(store, config, step[0]))


def dedup_pool(store: RunStore, config: Config, plan: StepPlan) -> list[Example] | None:
    """What a step's records are deduplicated against besides each other; None: no dedup.

    Base generation: the seeds and earlier rounds. Evolution: generation 0 and the earlier
    generations (the merge exempts a record's own ancestors). Follow-ups add turns to records
    that were deduplicated already, and the judging steps change no text.
    """
    if plan.stage == "generation":
        pool = list(seed_examples(load_seeds(config.seed_path())))
        for round in range(1, plan.round):
            pool.extend(store.read_merged(generation_step(round)))
        return pool
    if plan.stage == "evolution":
        return list(evolved_pool(store, config, plan.round - 1))
    if plan.stage == "followups" or plan.stage in JUDGING_STAGES:
        return None
    return []
