"""The recipe as a chain of steps over a run directory: which step follows, with which inputs.

A *step* is one run of a stage over input shards: the rounds of the base sources
(``generation-01`` ... for Self-Instruct, ``magpie-01`` ..., ``grounded-01`` ...), ``grammar``,
``quality``, ``evolution-01`` ... (generations), ``followups``, ``code_check``, ``annotate``.
A round asks each base source that is still short of its share of the target, in the order of
:data:`~laerebogen.config.schema.BASE_SOURCES`; every base step's merge deduplicates against
the seeds and every base step before it, whatever its source.
Planning a step writes its input shards and then ``<step>/plan.json``, the marker that the
step may run; a planned step is never planned again, so shards never see their inputs change.
The merge job of a step calls :func:`plan_next` and so writes the next step's inputs; the
driver follows the chain. Everything here is decided from the configuration and the merged
sets on disk, so any process reaches the same decision.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Iterator
from itertools import chain as chain_iterables
from itertools import islice

import msgspec

from laerebogen.config.schema import BASE_SOURCES, SOURCE_STAGES, Config
from laerebogen.records import Example
from laerebogen.seeds import load_seeds, seed_examples
from laerebogen.store.run_dir import RunStore

# A later round asks for this much more than the last round's yield promises, because the
# growing pool rejects more near-duplicates each round.
ROUND_MARGIN = 1.1
# A later round never plans more than this many times the first round's prompts.
MAX_ROUND_GROWTH = 4
BASE_STAGES = tuple(SOURCE_STAGES.values())
STAGE_SOURCES = {stage: source for source, stage in SOURCE_STAGES.items()}
# Magpie and grounded make at most one record per input: their first round has this many
# inputs per record wanted (Self-Instruct's is `generation.first_round_prompts`).
FIRST_ROUND_MARGIN = 1.5
# Stages that judge the finished conversations and change no text: each takes the previous
# one's records, and their merges neither screen nor deduplicate again.
JUDGING_STAGES = ("code_check", "annotate")


class StepPlan(msgspec.Struct, frozen=True, omit_defaults=True):
    """A planned step: its stage, round or generation, and how its inputs were sharded;
    ``models``: the model of each shard of a mixture (empty where the stage has one model or
    none: its plan is written as before mixtures existed)."""

    step: str
    stage: str
    round: int
    shards: int
    inputs: int
    models: tuple[str, ...] = ()

    def shard_model(self, config: Config, index: int) -> str:
        """The model that shard ``index`` loads."""
        if self.models:
            return self.models[index]
        (model,) = config.stage_models(self.stage)
        return model


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
    from the first base source's first round along each merge result's ``next``."""
    step: str | None = first_step(store)
    seen: set[str] = set()
    while step is not None and step not in seen:
        plan = read_plan(store, step)
        if plan is None:
            return
        seen.add(step)
        merged = read_merge(store, step)
        yield plan, merged
        step = merged.next if merged is not None else None


def base_step(source: str, round: int) -> str:
    """The step name of round ``round`` (1-based) of a base source."""
    return f"{SOURCE_STAGES[source]}-{round:02d}"


def generation_step(round: int) -> str:
    """The step name of Self-Instruct's round ``round`` (1-based)."""
    return base_step("self_instruct", round)


def first_step(store: RunStore) -> str:
    """The run's first step: round 1 of the first base source that has one (before anything
    is planned: Self-Instruct's)."""
    for source in BASE_SOURCES:
        if read_plan(store, base_step(source, 1)) is not None:
            return base_step(source, 1)
    return generation_step(1)


def source_targets(config: Config) -> dict[str, int]:
    """Each active base source's share of ``generation.target`` in records; the shares are
    rounded so that they add up to the target (largest remainders first)."""
    target = config.generation.target
    shares = {source: config.sources.shares[source] * target for source in config.sources.active()}
    counts = {source: math.floor(share) for source, share in shares.items()}
    by_remainder = sorted(shares, key=lambda source: counts[source] - shares[source])
    for source in by_remainder[: target - sum(counts.values())]:
        counts[source] += 1
    return counts


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
        result.next is None or step_stage(result.next) not in BASE_STAGES for _, result in merged
    )
    done = {step for step, _ in merged}
    later = [stage for step, stage, _ in later_steps(config) if step not in done]
    base = [SOURCE_STAGES[source] for source in config.sources.active()]
    return list(dict.fromkeys([*base, *later] if generating else later))


def step_stage(step: str) -> str:
    """The stage of a step, from its name: ``magpie-02`` is a step of ``magpie``."""
    stage, _, round = step.rpartition("-")
    return stage if stage in (*BASE_STAGES, "evolution") and round.isdigit() else step


def inputs_per_shard(config: Config, stage: str) -> int:
    """How many inputs a shard of ``stage`` gets: prompts in generation, records elsewhere."""
    if stage == "generation":
        return config.generation.prompts_per_shard
    return int(config.stage_settings(stage).records_per_shard)


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
    weights = config.stage_models(stage)
    models: list[str] = []  # the model of each shard written
    waiting: dict[str, list[Example]] = {}  # each model's records not yet in a shard
    inputs = 0

    def write_shard(model: str) -> None:
        store.write_inputs(name, len(models), waiting.pop(model))
        models.append(model)

    for record in records:
        model = assign_model(weights, config.seed, name, record.id)
        waiting.setdefault(model, []).append(record)
        inputs += 1
        if len(waiting[model]) == per_shard:
            write_shard(model)
    for model in sorted(waiting):
        write_shard(model)
    plan = StepPlan(step=name, stage=stage, round=round, shards=len(models), inputs=inputs,
                    models=tuple(models) if len(weights) > 1 else ())  # fmt: skip
    store.write_state(plan_file(name), plan)
    return plan


def assign_model(weights: dict[str, float], seed: int, step: str, record_id: str) -> str:
    """The model that writes ``record_id`` in ``step``: drawn by ``weights`` with a hash of
    the run's seed, the step and the id, so that every planning of the step draws the same;
    ``""`` for a stage without a model. Names are taken in sorted order."""
    if len(weights) <= 1:
        return next(iter(weights), "")
    digest = hashlib.sha256(f"{seed}/{step}/{record_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights.values())
    names = sorted(weights)
    for name in names:
        point -= weights[name]
        if point < 0:
            return name
    return names[-1]


def plan_first(store: RunStore, config: Config) -> StepPlan | None:
    """Round 1 of the first base source (planned once); None when it has no inputs."""
    return plan_base_round(store, config, config.sources.active()[0], 1)


def round_size(config: Config, source: str, rounds: list[tuple[int, int]]) -> int:
    """Inputs of a base source's next round from its ``rounds`` so far, as (inputs, kept).

    The first round: Self-Instruct's ``first_round_prompts``, else the source's target times
    :data:`FIRST_ROUND_MARGIN`. Later: the missing records divided by the last round's yield
    per input, with a margin; the first round's count when nothing was kept yet. Never less
    than one shard's worth (or the first round, if smaller): a shard's start-up, loading the
    model, costs the same however few inputs it has, and a round that falls a few records
    short costs a whole further round. Never more than :data:`MAX_ROUND_GROWTH` first rounds.
    """
    target = source_targets(config)[source]
    stage = SOURCE_STAGES[source]
    if source == "self_instruct":
        first = config.generation.first_round_prompts
    else:
        first = math.ceil(target * FIRST_ROUND_MARGIN)
    if not rounds or rounds[-1][1] == 0:
        return first
    have = sum(kept for _, kept in rounds)
    inputs, kept = rounds[-1]
    needed = math.ceil((target - have) * inputs / kept * ROUND_MARGIN)
    least = min(inputs_per_shard(config, stage), first)
    return max(least, min(needed, MAX_ROUND_GROWTH * first))


def source_rounds(store: RunStore, source: str) -> list[tuple[int, int]]:
    """(inputs, records kept) of every merged round of a base source, in order."""
    rounds = []
    while True:
        step = base_step(source, len(rounds) + 1)
        plan, merged = read_plan(store, step), store.merged_manifest(step)
        if plan is None or merged is None:
            return rounds
        rounds.append((plan.inputs, merged.outputs))


def base_records(store: RunStore, config: Config) -> int:
    """How many records the base sources' merged rounds kept, each up to its target."""
    targets = source_targets(config)
    return sum(
        min(sum(kept for _, kept in source_rounds(store, source)), targets[source])
        for source in config.sources.active()
    )


def round_inputs(
    store: RunStore, config: Config, source: str, round: int, count: int
) -> list[Example]:
    """The inputs of a base source's round: prompt slots, or for the grounded source the
    corpus passages no earlier round had (in an order shuffled with the run's seed)."""
    from laerebogen.stages.generation import prompt_slots

    if source != "grounded":
        return prompt_slots(round, count)
    from laerebogen.sources.corpus import corpus_passages

    passages = corpus_passages(config.sources.grounded)
    random.Random(f"{config.seed}/passages").shuffle(passages)
    used = sum(inputs for inputs, _ in source_rounds(store, source)[: round - 1])
    return passages[used : used + count]


def plan_base_round(store: RunStore, config: Config, source: str, round: int) -> StepPlan | None:
    """Plan round ``round`` of ``source`` (once) from its earlier rounds; None when the
    source has no inputs left (a corpus whose passages are all used)."""
    step = base_step(source, round)
    planned = read_plan(store, step)
    if planned is not None:
        return planned
    # Only the rounds before this one: a round merged again decides as it did the first time.
    rounds = source_rounds(store, source)[: round - 1]
    inputs = round_inputs(store, config, source, round, round_size(config, source, rounds))
    if not inputs:
        return None
    return write_step(store, config, (step, SOURCE_STAGES[source], round), inputs)


def next_base_round(store: RunStore, config: Config, plan: StepPlan) -> StepPlan | None:
    """After a base source's round: the next source in this round that is short of its
    target, else the first short one in the next round (within ``generation.max_rounds``);
    None when every source has its share, has run out of inputs, or the rounds are over."""
    sources = config.sources.active()
    done = STAGE_SOURCES[plan.stage]
    targets = source_targets(config)
    after = sources[sources.index(done) + 1 :]
    candidates = [(source, plan.round) for source in after]
    candidates += [(source, plan.round + 1) for source in sources]
    for source, round in candidates:
        if round > config.generation.max_rounds:
            continue
        have = sum(kept for _, kept in source_rounds(store, source)[: round - 1])
        if have < targets[source]:
            following = plan_base_round(store, config, source, round)
            if following is not None:
                return following
    return None


def base_steps_before(config: Config, plan: StepPlan) -> Iterator[str]:
    """The names of the base steps that run before the base step ``plan``, in order: every
    source's earlier rounds, and this round's sources before its own."""
    sources = config.sources.active()
    this = sources.index(STAGE_SOURCES[plan.stage])
    for round in range(1, plan.round + 1):
        for source in sources if round < plan.round else sources[:this]:
            yield base_step(source, round)


def generated(store: RunStore, config: Config) -> Iterator[Example]:
    """The records of the base sources' rounds in order, each source up to its target."""
    targets = source_targets(config)

    def every_round(source: str) -> Iterator[Example]:
        for round in range(1, len(source_rounds(store, source)) + 1):
            yield from store.read_merged(base_step(source, round))

    for source in config.sources.active():
        yield from islice(every_round(source), targets[source])


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


def import_step(name: str) -> str:
    """The run directory's set of the imported dataset ``name``."""
    return f"import-{name}"


def imported(store: RunStore, config: Config, step: str) -> Iterator[Example]:
    """The records of every import that enters at ``step``, by name."""
    for name, source in sorted(config.sources.imports.items()):
        if source.step == step:
            yield from store.read_merged(import_step(name))


def step_inputs(store: RunStore, config: Config, step: str) -> Iterable[Example]:
    """The inputs of a step after base generation: from the merged sets before it, then the
    imports that enter at it."""
    return chain_iterables(_made_inputs(store, config, step), imported(store, config, step))


def _made_inputs(store: RunStore, config: Config, step: str) -> Iterable[Example]:
    """A later step's inputs made by the run's own steps."""
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

    After a base source's round that is the next round of a source short of its share
    (:func:`next_base_round`), else the first later step.
    """
    if plan.stage in BASE_STAGES:
        base_round = next_base_round(store, config, plan)
        if base_round is not None:
            return base_round
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

    A base source's round: the seeds and every base step before it. Evolution: generation 0
    and the earlier generations (the merge exempts a record's own ancestors). Follow-ups add
    turns to records that were deduplicated already, and the judging steps change no text.
    """
    if plan.stage in BASE_STAGES:
        pool = list(seed_examples(load_seeds(config.seed_path())))
        for step in base_steps_before(config, plan):
            if store.merged_manifest(step) is not None:
                pool.extend(store.read_merged(step))
        return pool
    if plan.stage == "evolution":
        return list(evolved_pool(store, config, plan.round - 1))
    if plan.stage == "followups" or plan.stage in JUDGING_STAGES:
        return None
    return []
