"""The annotate stage: its prompt and constraint, reading replies, the retry, and the real
engine on the tiny model."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Annotate, Config, Sampling
from laerebogen.errors import ConfigError
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import ChatRequest, Request, Result
from laerebogen.records import Annotation, Example, Message
from laerebogen.stages import build_stage
from laerebogen.stages.annotate import AnnotateStage, annotation_regex, read_annotation
from laerebogen.stages.core import Context, drive
from laerebogen.stages.taxonomy import load_taxonomy, packaged_taxonomy_path
from tests.support.stages import CONTEXT, RECORD, run, short_records

TAXONOMY = load_taxonomy(None)
REPLY = {
    "domæne": "naturvidenskab",
    "opgavetype": "faktaspørgsmål",
    "sværhedsgrad": 2,
    "begrundelse": "Svaret er korrekt og klart.",
    "kvalitet": 4,
    "skadeligt": "nej",
}


def reply(**changes: object) -> str:
    return json.dumps({**REPLY, **changes}, ensure_ascii=False, separators=(",", ":"))


def stage(**settings: object) -> AnnotateStage:
    return AnnotateStage(Annotate(**settings), TAXONOMY)  # type: ignore[arg-type]


def result(text: str, finish: str = "stop") -> Result:
    return Result("r", text, finish, 10, 5)  # type: ignore[arg-type]


def test_a_reply_becomes_the_records_annotation_with_its_step() -> None:
    outcomes, funnel, sent = run(stage(), [RECORD], reply())
    [record] = outcomes[0].records
    assert record.annotation == Annotation(
        "naturvidenskab", "faktaspørgsmål", 2, 4, "Svaret er korrekt og klart.", "nej"
    )
    assert not record.annotation.harmful
    # Nothing else changes: the text, the id and the scores stay as they were.
    assert msgspec.structs.replace(record, annotation=None, provenance=RECORD.provenance) == RECORD
    step = record.provenance.steps[-1]
    assert (step.stage, step.note, step.model, step.shard) == (
        "annotate",
        "annotated",
        "instruct",
        2,
    )
    assert step.sampling_seed == sent[0].seed
    assert (funnel.requests, funnel.records, funnel.rejected) == (1, 1, {})


def test_the_prompt_puts_the_fixed_head_first_for_the_prefix_cache() -> None:
    other = msgspec.structs.replace(RECORD, id="rec-2", instruction="Nævn en dansk ø.")
    _, _, sent = run(stage(), [RECORD, other], reply())
    prompts = [request.messages[0].content for request in sent if isinstance(request, ChatRequest)]
    head = stage().head
    assert all(prompt.startswith(head) for prompt in prompts)
    assert prompts[0] != prompts[1] and len(head) > 0.6 * len(prompts[0])
    # The head names every label the reply may use, and defines the levels.
    for label in [*TAXONOMY.domains, *TAXONOMY.task_types, *TAXONOMY.harms]:
        assert f'"{label}"' in head
    assert TAXONOMY.difficulty["5"] in head and TAXONOMY.quality["1"] in head
    # The whole conversation follows, each message cut to message_chars.
    assert prompts[0].endswith(f"Assistent: {RECORD.output}")
    long = msgspec.structs.replace(RECORD, output="ord " * 1000)
    _, _, [request] = run(stage(message_chars=100), [long], reply())
    assert isinstance(request, ChatRequest)
    assert request.messages[0].content.endswith(" […]") and len(request.messages[0].content) < (
        len(head) + 300
    )


def test_every_turn_of_a_multi_turn_conversation_is_read() -> None:
    turns = ("Hvad er 2+2?", "4.", "Og 3+3?", "6.")
    conversation = msgspec.structs.replace(
        RECORD,
        messages=tuple(
            Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)
        ),
    )
    _, _, [request] = run(stage(), [conversation], reply())
    assert isinstance(request, ChatRequest)
    assert request.messages[0].content.endswith(
        "Bruger: Hvad er 2+2?\n\nAssistent: 4.\n\nBruger: Og 3+3?\n\nAssistent: 6."
    )


def test_the_constraint_allows_exactly_the_labels_and_levels() -> None:
    pattern = re.compile(annotation_regex(TAXONOMY, None))
    assert pattern.fullmatch(reply())
    assert pattern.fullmatch(reply(skadeligt="farlige råd om sundhed, jura eller økonomi"))
    for bad in (
        {"domæne": "astrologi"},
        {"sværhedsgrad": 6},
        {"kvalitet": 0},
        {"skadeligt": "ja"},
        {"begrundelse": ""},
    ):
        assert not pattern.fullmatch(reply(**bad)), bad
    bounded = re.compile(annotation_regex(TAXONOMY, 10))
    assert bounded.fullmatch(reply(begrundelse="Kort."))
    assert not bounded.fullmatch(reply(begrundelse="Alt for lang begrundelse."))
    assert stage(constrained=False).constraint is None


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        (reply(), "length", "truncated"),
        ("", "rejected", "prompt_too_long"),
        ("Samtalen handler om sundhed.", "stop", "invalid_annotation"),
        (reply(domæne="astrologi"), "stop", "invalid_annotation"),
        (reply(kvalitet=True), "stop", "invalid_annotation"),
        (reply(kvalitet="fire"), "stop", "invalid_annotation"),
        (reply(kvalitet=4.0), "stop", "invalid_annotation"),
        (reply(sværhedsgrad=9), "stop", "invalid_annotation"),
        (reply(skadeligt="måske"), "stop", "invalid_annotation"),
    ],
)
def test_replies_that_give_no_annotation_say_why(text: str, finish: str, reason: str) -> None:
    found = read_annotation(result(text, finish), TAXONOMY)
    assert not isinstance(found, Annotation) and found.reason == reason


def test_labels_are_read_whatever_their_case_and_spacing() -> None:
    text = "```json\n" + reply(domæne=" Dansk  Sprog", skadeligt="VOLD", kvalitet=" 4") + "\n```"
    found = read_annotation(result(text), TAXONOMY)
    assert isinstance(found, Annotation)
    assert (found.domain, found.harm, found.harmful) == ("dansk sprog", "vold", True)
    assert found.quality == 4  # a level written as a string, as an unconstrained reply may


def scripted(replies: Sequence[str]) -> tuple[list[Request], object]:
    """A generate function answering the n-th request with ``replies[n]``."""
    sent: list[Request] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        answers = [
            Result(r.id, replies[len(sent) + i], "stop", 10, 5) for i, r in enumerate(requests)
        ]
        sent.extend(requests)
        return answers

    return sent, generate


def test_a_failed_reply_is_asked_again_once_with_a_new_seed() -> None:
    sent, generate = scripted(["ikke JSON", reply(kvalitet=2)])
    [outcome], funnel = drive(stage(), [RECORD], CONTEXT, generate)  # type: ignore[arg-type]
    [record] = outcome.records
    assert record.annotation is not None and record.annotation.quality == 2
    assert len(sent) == 2 and sent[0].seed != sent[1].seed and sent[0].id != sent[1].id
    assert record.provenance.steps[-1].sampling_seed == sent[1].seed
    [retried] = outcome.rejections
    assert (retried.reason, retried.raw) == ("invalid_annotation", "ikke JSON")
    assert retried.detail.startswith("try 1:")
    assert funnel.rejected == {"invalid_annotation": 1} and funnel.records == 1


def test_two_failed_replies_keep_the_conversation_unannotated() -> None:
    outcomes, funnel, sent = run(stage(), [RECORD], "ikke JSON")
    [record] = outcomes[0].records
    assert record.annotation is None and record.id == RECORD.id
    assert record.provenance.steps[-1].note == "annotation_failed"
    assert [r.reason for r in outcomes[0].rejections] == [
        "invalid_annotation", "invalid_annotation", "annotation_failed",
    ]  # fmt: skip
    assert len(sent) == 2 and funnel.records == 1
    assert funnel.rejected == {"invalid_annotation": 2, "annotation_failed": 1}


def test_any_model_text_gives_exactly_one_record() -> None:
    for text in ("", "{", reply(), "null", json.dumps([REPLY]), "\x00" * 5):
        outcomes, funnel, _ = run(stage(), [RECORD], text)
        assert funnel.records == 1 and outcomes[0].records[0].id == RECORD.id


# ---------------------------------------------------------------- the taxonomy file


def test_the_packaged_taxonomy_has_the_issues_lists() -> None:
    assert len(TAXONOMY.domains) == 20 and "dansk sprog" in TAXONOMY.domains
    assert len(TAXONOMY.task_types) == 14 and TAXONOMY.task_types[-1] == "andet"
    assert len(TAXONOMY.harms) == 8 and "ekstremisme" in TAXONOMY.harms
    assert sorted(TAXONOMY.difficulty) == sorted(TAXONOMY.quality) == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"ekstremisme"', '"ekstre\\"misme"'), "quotation marks"),
        (('"kultur",', '"kultur", "Kultur",'), "names a label twice"),
        (('"ekstremisme"', '"nej"'), "the answer for a harmless conversation"),
        (('5 = "kræver ekspertviden', '6 = "kræver ekspertviden'), "exactly the levels 1 to 5"),
        (('"domæne" = [', '"domæner" = ['), "not a usable taxonomy"),
        (("[kvalitet]", "[kvalitet"), "not a usable taxonomy"),
    ],
)
def test_a_bad_taxonomy_file_is_a_one_line_error(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = packaged_taxonomy_path().read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "taxonomy.toml"
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_taxonomy(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="no such taxonomy file"):
        load_taxonomy(tmp_path / "missing.toml")


def test_a_config_replaces_the_taxonomy(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    text = packaged_taxonomy_path().read_text(encoding="utf-8")
    path.write_text(text.replace('"kommunikation",', '"kommunikation",\n    "landbrug",'))
    config = load_config("tiny", [f"annotate.taxonomy={str(path)!r}"])
    built = build_stage("annotate", config)
    assert isinstance(built, AnnotateStage) and '"landbrug"' in built.head
    found = read_annotation(result(reply(domæne="landbrug")), built.taxonomy)
    assert isinstance(found, Annotation) and found.domain == "landbrug"


# ---------------------------------------------------------------- the real engine


def test_the_real_engine_annotates_every_record_with_constrained_json(
    tiny_engine: Engine, tiny_config: Config
) -> None:
    records: list[Example] = short_records()[:6]
    settings = msgspec.structs.replace(tiny_config.annotate, enabled=True)
    assert settings.constrained and settings.bounded  # what the tiny config gives
    annotate = AnnotateStage(settings, TAXONOMY)
    context = Context(run_seed=tiny_config.seed, model=tiny_engine.name)
    outcomes, funnel = drive(annotate, records, context, tiny_engine.generate)
    # The random model's noise, forced into the reply's shape, always reads on the first try.
    assert (funnel.inputs, funnel.records, funnel.requests) == (6, 6, 6)
    assert funnel.rejected == {} and funnel.finished == {"stop": 6}
    for record, outcome in zip(records, outcomes, strict=True):
        [annotated] = outcome.records
        annotation = annotated.annotation
        assert annotation is not None and annotated.id == record.id
        assert annotation.domain in TAXONOMY.domains
        assert 1 <= annotation.quality <= 5 and 1 <= annotation.difficulty <= 5
        assert annotated.provenance.steps[-1].model == tiny_engine.name


def test_a_bounded_reply_without_room_for_its_reason_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"max_tokens 100 leaves no room for the reason"):
        stage(bounded=True, sampling=Sampling(max_tokens=100))
    assert stage(bounded=True, sampling=Sampling(max_tokens=256)).constraint is not None
