"""A finished run whose records went through every step that changes text: base generation,
grammar, quality, one evolution generation, follow-ups and annotation, built without a model
and with known changes, plus rejections in a shard and in merges. What the lineage and browse
tests read."""

from __future__ import annotations

from pathlib import Path

import msgspec

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.pipeline.driver import import_seeds
from laerebogen.pipeline.plan import plan_first
from laerebogen.records import (
    Annotation,
    Example,
    Message,
    Provenance,
    Rejection,
    Step,
    child_id,
    record_id,
)
from laerebogen.stages.generation import SLOT_NOTE
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.finished_run import merge_step

OVERRIDES = [
    "generation.max_rounds=1",
    "evolution.generations=1",
    "followups.turns=1",
    "annotate.enabled=true",
    "code_check.enabled=false",
]
SLOT = record_id("prompt-slot", 1, 0)
BASE = [
    ("Skriv en opskrift på æblekage.", "", "Bland mel, smør og sukker, og læg æbler ovenpå."),
    ("Forklar hvorfor himlen er blå.", "", "Lyset spredes mest i den blå del af spektret."),
    ("Oversæt sætningen til engelsk.", "Jeg kan lide kaffe.", "I like coffee."),
]
# Grammar corrects the first record's instruction (two words added), quality rewrites the
# second's answer.
CORRECTED = "Skriv en kort opskrift på en æblekage."
IMPROVED = (
    "Sollyset spredes mest i den blå del af spektret, fordi blåt lys har kort bølgelængde og "
    "derfor rammer luftens molekyler oftere end rødt lys. Derfor ser vi blåt lys fra hele "
    "himlen om dagen."
)  # with the follow-up's answer enough words for the filtered version
EVOLVED = "Skriv en opskrift på æblekage uden gluten, og forklar hvert trin."
EVOLVED_ANSWER = "Brug glutenfrit mel: det binder dejen uden hvede."
FOLLOWUP = ("Kan man fryse den?", "Ja, kagen kan fryses i op til tre måneder.")
ANNOTATION = Annotation("madlavning", "opskrift", 2, 4, "Klar og korrekt.", "nej")
REJECTED = "Skriv en opskrift på æblekage!"  # a near-duplicate of the first base record


def _step(stage: str, seed: int, note: str = "", round: int = 0, shard: int = 0) -> Step:
    return Step(stage, round, "tiny", sampling_seed=seed, shard=shard, note=note)


def _changed(record: Example, step: Step, **fields: str) -> Example:
    return msgspec.structs.replace(record, **fields).with_step(step)


def lineage_run(tmp_path: Path, name: str = "run") -> tuple[RunStore, Config]:
    """The finished run (see the module docstring): three base records, of which the first
    is corrected and evolved, the second improved; four conversations in the end, of which
    only the improved one is long enough for the filtered version."""
    config = load_config("tiny", OVERRIDES)
    store = start_run(config, tmp_path / name)
    import_seeds(store, config.seed_path())
    plan = plan_first(store, config)
    assert plan is not None and plan.step == "generation-01"
    generation = _step("generation", 101, f"{SLOT_NOTE}{SLOT}", round=1, shard=1)
    base = [
        Example(
            id=record_id("generation", 1, SLOT, position),
            instruction=instruction,
            input=input,
            output=output,
            provenance=Provenance("self-instruct", steps=(generation,)),
        )
        for position, (instruction, input, output) in enumerate(BASE)
    ]
    near = msgspec.structs.replace(base[0], id=record_id("generation", 1, SLOT, 9))
    near = msgspec.structs.replace(near, instruction=REJECTED)
    with store.open_shard(plan.step, 0) as writer:  # a shard's own rejection: unparsable
        writer.write_chunk([], [Rejection("no_tasks", SLOT, "no numbered task", raw="???")])
        writer.finish()
    duplicate = Rejection("near_duplicate", near.id, f"ROUGE-L 0.86 with {base[0].id}", near)
    plan = merge_step(store, config, plan, base, [duplicate])
    assert plan is not None and plan.step == "grammar"
    grammar = [
        _changed(base[0], _step("grammar", 201, "corrected"), instruction=CORRECTED),
        base[1].with_step(_step("grammar", 202, "unchanged")),
        base[2].with_step(_step("grammar", 203, "unchanged")),
    ]
    plan = merge_step(store, config, plan, grammar)
    assert plan is not None and plan.step == "quality"
    quality = [
        grammar[0].with_step(_step("quality", 301, "good")),
        _changed(grammar[1], _step("quality", 302, "improved: too short"), output=IMPROVED),
        grammar[2].with_step(_step("quality", 303, "good")),
    ]
    plan = merge_step(store, config, plan, quality)
    assert plan is not None and plan.step == "evolution-01"
    parent = quality[0]
    evolved = Example(
        id=child_id(parent.id, "evolution", 1),
        instruction=EVOLVED,
        output=EVOLVED_ANSWER,
        provenance=Provenance(
            origin="evolved",
            generation=1,
            operation="add_constraints",
            parent_id=parent.id,
            steps=(*parent.provenance.steps, _step("evolution", 401, "add_constraints", 1)),
        ),
    )
    failed = Rejection("not_harder", quality[2].id, "the judge found nothing new", quality[2])
    plan = merge_step(store, config, plan, [evolved], [failed])
    assert plan is not None and plan.step == "followups"
    conversations = [
        msgspec.structs.replace(
            record,
            messages=(
                *record.conversation(),
                Message("user", FOLLOWUP[0]),
                Message("assistant", FOLLOWUP[1]),
            ),
            scores={"danish_confidence": 0.9},
        ).with_step(_step("followups", 500 + number, "turns=1/1"))
        for number, record in enumerate([evolved, *quality])
    ]
    plan = merge_step(store, config, plan, conversations)
    assert plan is not None and plan.step == "annotate"
    annotated = [msgspec.structs.replace(c, annotation=ANNOTATION) for c in conversations]
    annotated = [c.with_step(_step("annotate", 600)) for c in annotated]
    assert merge_step(store, config, plan, annotated) is None
    return store, config
