"""A finished run built without a model: base generation, follow-ups and (unless turned off)
annotation merged, with chosen final conversations and annotations. What the export, report
and card tests work on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.pipeline.driver import import_seeds
from laerebogen.pipeline.plan import (
    BASE_STAGES,
    MergeResult,
    StepPlan,
    first_step,
    merge_file,
    plan_first,
    plan_next,
)
from laerebogen.records import (
    Annotation,
    BlockCheck,
    Example,
    Message,
    Provenance,
    Rejection,
    Step,
    record_id,
)
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.records import make_example


def conversation(
    *turns: str, scores: dict[str, float] | None = None, index: int = 0, **provenance: object
) -> Example:
    """A conversation of alternating user and assistant messages."""
    messages = tuple(
        Message("user" if position % 2 == 0 else "assistant", text)
        for position, text in enumerate(turns)
    )
    origin = provenance.pop("origin", "self-instruct")
    return Example(
        id=record_id("export-test", index),
        instruction=turns[0],
        output=turns[1],
        messages=messages,
        provenance=Provenance(
            origin=origin,  # type: ignore[arg-type]
            steps=(
                Step("generation", 1, "tiny", sampling_seed=11, shard=0),
                Step("followups", 0, "tiny", sampling_seed=12, shard=1),
            ),
            **provenance,  # type: ignore[arg-type]
        ),
        scores=scores or {},
    )


OVERRIDES = [
    "grammar.enabled=false",
    "quality.enabled=false",
    "evolution.generations=0",
    "generation.max_rounds=1",
    "followups.turns=1",
]
GOOD_ANSWER = (
    "Æbler er sunde, fordi de indeholder fibre og vitaminer. Fibrene hjælper fordøjelsen, og "
    "C-vitaminet styrker immunforsvaret. Spis gerne et æble om dagen som en del af en varieret "
    "kost."
)  # 29 words, 3 sentences, 9 long: LIX 40.70
FOLLOWUP_ANSWER = "Ja. Grønne æbler har lidt mindre sukker end røde, men forskellen er lille."
HARD_ANSWER = (
    "Sundhedsstyrelsens kostanbefalinger understreger betydningen af grøntsagsindtagelse "
    "fiberholdige fødevarer fuldkornsprodukter fiskeprodukter magert kød begrænset "
    "sukkerindtagelse reduceret saltindtagelse tilstrækkelig væskeindtagelse regelmæssig fysisk "
    "aktivitet for voksne børn ældre gravide ammende personer kroniske sygdomme"
)  # 30 words, 1 sentence, 22 long: LIX 103.33


def final_conversations() -> list[Example]:
    """The follow-ups' merged set: two conversations that pass the filters, four that do not."""
    question, again = "Hvorfor er æbler sunde?", "Er grønne æbler bedre end røde?"
    good = {"danish_confidence": 0.934567, "quality_good": 1.0}
    return [
        conversation(question, GOOD_ANSWER, again, FOLLOWUP_ANSWER, scores=good, index=0),
        # 4 words of answers: too few, and LIX 4.0 is too low.
        conversation("Nævn en frugt.", "Ja, fx et æble.", scores=good, index=1),
        # Danish less likely than the other languages together.
        conversation(
            question,
            GOOD_ANSWER,
            again,
            FOLLOWUP_ANSWER,
            scores={"danish_confidence": 0.31, "quality_good": 1.0},
            index=2,
        ),
        # Never judged for language: no confidence, so not in the filtered version.
        conversation(question, GOOD_ANSWER, again, FOLLOWUP_ANSWER, index=3),
        # One run-on sentence of compounds.
        conversation("Hvad anbefaler Sundhedsstyrelsen?", HARD_ANSWER, scores=good, index=4),
        conversation(
            "Skriv en kort tekst om blåbær på dansk.",
            GOOD_ANSWER.replace("Æbler", "Blåbær"),
            "Og om jordbær?",
            FOLLOWUP_ANSWER.replace("æbler", "jordbær"),
            scores={"danish_confidence": 0.5},  # exactly the threshold: bounds are inclusive
            index=5,
            origin="evolved",
            generation=2,
            operation="deepen",
        ),
    ]


PASSING = [0, 5]


GOOD_ANNOTATION = Annotation("sundhed", "faktaspørgsmål", 2, 4, "Korrekt og klart.", "nej")


def finished_run(
    tmp_path: Path,
    records: Sequence[Example] | None = None,
    name: str = "run",
    overrides: Sequence[str] = (),
    *,
    annotations: Sequence[Annotation | None] | None = None,
    annotate: bool = True,
    code_checks: Sequence[tuple[BlockCheck, ...]] | None = None,
    stop_before: str | None = None,
) -> tuple[RunStore, Config]:
    """A run whose base generation (4 records kept), follow-ups and judging steps are merged,
    with ``records`` as the result, annotated with ``annotations`` (default: each harmless,
    quality 4); ``annotate=False`` leaves the annotate step out. ``code_checks`` (each record's
    block results) turns the code_check step on. ``stop_before`` leaves that step planned but
    not run. ``overrides`` change the config after :data:`OVERRIDES`."""
    checking = f"code_check.enabled={str(code_checks is not None).lower()}"
    config = load_config(
        "tiny",
        [*OVERRIDES, f"annotate.enabled={str(annotate).lower()}", checking, *overrides],
    )
    store = start_run(config, tmp_path / name)
    import_seeds(store, config.seed_path())
    # Round 1 of each base source: the first keeps 4 records, the others none.
    base_round: StepPlan | None = plan_first(store, config)
    base = [make_example(index) for index in range(4)]
    while base_round is not None and base_round.stage in BASE_STAGES:
        kept = base if base_round.round == 1 and base_round.step == first_step(store) else []
        base_round = merge_step(store, config, base_round, kept)
    followups = base_round
    assert followups is not None and followups.step == "followups"
    records = final_conversations() if records is None else list(records)
    judged = {
        "annotate": [GOOD_ANNOTATION] * len(records) if annotations is None else annotations,
        "code_check": code_checks,
    }
    step, inputs = followups, followups.inputs
    while step is not None and step.step != stop_before:
        if step.stage != "followups":
            field = "annotation" if step.stage == "annotate" else step.stage
            records = [
                msgspec.structs.replace(record, **{field: result})
                for record, result in zip(records, judged[step.stage], strict=True)
            ]
        step, inputs = merge_step(store, config, step, records, records_in=inputs), len(records)
    return store, config


MERGE_CHUNK = 10_000  # records per chunk of a merged set, as large runs write them


def write_merged(
    store: RunStore, step: str, records: Sequence[Example], rejections: Sequence[Rejection] = ()
) -> None:
    """The merged set of ``step`` as its merge job would write it (rejections in the first
    chunk)."""
    with store.open_merged(step) as writer:
        for start in range(0, max(len(records), 1), MERGE_CHUNK):
            chunk = records[start : start + MERGE_CHUNK]
            writer.write_chunk(chunk, [] if start else rejections, [r.id for r in chunk])
        writer.finish()


def merge_step(
    store: RunStore,
    config: Config,
    plan: StepPlan,
    records: Sequence[Example],
    rejections: Sequence[Rejection] = (),
    *,
    records_in: int | None = None,
) -> StepPlan | None:
    """Finish ``plan`` as its merge job would, keeping ``records`` and rejecting
    ``rejections`` (``records_in`` default: both together); returns the next step's plan."""
    write_merged(store, plan.step, records, rejections)
    following = plan_next(store, config, plan)
    if records_in is None:
        records_in = len(records) + len(rejections)
    next_step = following.step if following else None
    result = MergeResult(plan.step, records_in, len(records), {}, next_step, 0.1)
    store.write_state(merge_file(plan.step), result)
    return following


def read_lines(path: Path) -> list[dict]:
    """The lines of a JSONL file, refusing NaN and infinity as the JSON standard does."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: {constant} in the export")

    text = path.read_bytes().decode("utf-8")  # strict: the file is valid UTF-8
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]
