"""Grounded questions: a question of a drawn kind and form, an answer from the passage, and a
judge that rejects what the passage does not support."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest

from laerebogen.config.schema import QUESTION_KINDS, Config, Grounded
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import ChatRequest, FinishReason, Request, Result
from laerebogen.sources.corpus import corpus_passages
from laerebogen.stages.core import Context, Outcome, drive
from laerebogen.stages.grounded import GroundedStage
from tests.support.stages import CONTEXT

SETTINGS = Grounded(corpus="packaged:corpus_da")
PASSAGES = corpus_passages(SETTINGS)
QUESTION = json.dumps({"spørgsmål": "Hvornår blev Danmarks første grundlov underskrevet?"})
ANSWER = "Den blev underskrevet den 5. juni 1849 af kong Frederik den 7."
YES = json.dumps({"understøttet": "ja", "begrundelse": "Datoen står i teksten."})
NO = json.dumps({"understøttet": "nej", "begrundelse": "Kongens navn står ikke i teksten."})


def run(
    question: str = QUESTION,
    answer: str = ANSWER,
    verdict: str = YES,
    settings: Grounded = SETTINGS,
    finish: FinishReason = "stop",
) -> tuple[list[Outcome], list[Request]]:
    """Drive the stage over every shipped passage with canned replies per call."""
    sent: list[Request] = []
    replies = {"question": question, "answer": answer, "judge": verdict}

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(requests)
        return [Result(r.id, replies[r.id.rsplit("/", 1)[1]], finish, 50, 20) for r in requests]

    outcomes, _ = drive(GroundedStage(settings), PASSAGES, CONTEXT, generate)
    return outcomes, sent


def test_a_supported_answer_becomes_a_task_of_its_passage_in_either_form() -> None:
    outcomes, sent = run()
    records = [record for outcome in outcomes for record in outcome.records]
    assert len(records) == len(PASSAGES)
    forms = Counter(record.provenance.steps[0].note.split()[1] for record in records)
    assert set(forms) == {"reading", "closed_book"}
    for passage, record in zip(PASSAGES, records, strict=True):
        assert record.instruction == "Hvornår blev Danmarks første grundlov underskrevet?"
        assert record.output == ANSWER
        assert (record.provenance.origin, record.provenance.source) == ("grounded", "grounded")
        assert record.provenance.passage == passage.provenance.passage
        kind, form = record.provenance.steps[0].note.split()
        assert kind in QUESTION_KINDS
        # Reading comprehension shows the passage; closed book does not.
        assert record.input == (passage.input if form == "reading" else "")
    # Three calls per passage, each with its own seed, the passage in every prompt.
    assert len(sent) == 3 * len(PASSAGES) and len({r.seed for r in sent}) == len(sent)
    chats = [r for r in sent if isinstance(r, ChatRequest)]
    assert all(PASSAGES[0].input in r.messages[0].content for r in chats[:1])
    assert run()[1] == sent  # the same passages ask the same again


def test_kinds_and_forms_are_drawn_evenly() -> None:
    stage_settings = msgspec.structs.replace(SETTINGS, closed_book_share=0.25)
    many = [msgspec.structs.replace(PASSAGES[0], id=f"p{index}") for index in range(800)]
    sent: list[Request] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(requests)
        return [Result(r.id, "", "length", 1, 1) for r in requests]  # stop after the question

    drive(GroundedStage(stage_settings), many, CONTEXT, generate)
    prompts = [r.messages[0].content for r in sent if isinstance(r, ChatRequest)]
    kinds = Counter(kind for prompt in prompts for kind in QUESTION_KINDS
                    if f'begynder med "{kind.capitalize()}"' in prompt)  # fmt: skip
    assert set(kinds) == set(QUESTION_KINDS)
    assert all(60 <= count <= 140 for count in kinds.values()), kinds  # 100 expected each
    closed = sum("ikke har set teksten" in prompt for prompt in prompts)
    assert 150 <= closed <= 250  # 200 expected


@pytest.mark.parametrize(
    ("changes", "reason", "call"),
    [
        ({"verdict": NO}, "unsupported", "judge"),
        ({"verdict": '{"understøttet": "måske", "begrundelse": ""}'}, "invalid_judgement", "judge"),
        ({"verdict": "ja"}, "invalid_judgement", "judge"),
        ({"question": '{"spørgsmål": "Hvad?"}'}, "invalid_question", "question"),
        ({"question": "ikke json"}, "invalid_question", "question"),
        ({"answer": ""}, "empty_answer", "answer"),
        ({"finish": "length"}, "truncated", "question"),
    ],
)
def test_every_failure_is_a_rejection_with_its_reason(
    changes: dict[str, str], reason: str, call: str
) -> None:
    outcomes, _ = run(**changes)  # type: ignore[arg-type]
    assert not any(outcome.records for outcome in outcomes)
    rejections = [r for outcome in outcomes for r in outcome.rejections]
    assert len(rejections) == len(PASSAGES)
    assert {(r.reason, r.detail.split(":")[0]) for r in rejections} == {(reason, call)}
    if call != "question":  # the task is kept with its rejection, for the funnel
        assert all(r.record is not None and r.record.provenance.passage for r in rejections)
    assert rejections[0].source_id == PASSAGES[0].id


def test_a_closed_book_task_may_not_mention_the_text() -> None:
    closed = msgspec.structs.replace(SETTINGS, closed_book_share=1.0)
    outcomes, _ = run(question=json.dumps({"spørgsmål": "Hvad siger teksten om Fanø?"}),
                      settings=closed)  # fmt: skip
    assert {r.reason for o in outcomes for r in o.rejections} == {"mentions_text"}
    outcomes, _ = run(answer="Ifølge teksten skete det i 1849.", settings=closed)
    assert {r.reason for o in outcomes for r in o.rejections} == {"mentions_text"}
    reading = msgspec.structs.replace(SETTINGS, closed_book_share=0.0)
    outcomes, _ = run(answer="Ifølge teksten skete det i 1849.", settings=reading)
    assert all(outcome.records for outcome in outcomes)


def test_the_tiny_model_asks_answers_and_judges(tiny_engine: Engine, tiny_config: Config) -> None:
    stage = GroundedStage(tiny_config.sources.grounded)
    context = Context(run_seed=tiny_config.seed, round=1, model=tiny_engine.name)
    passages = corpus_passages(tiny_config.sources.grounded)[:8]
    outcomes, funnel = drive(stage, passages, context, tiny_engine.generate)
    assert funnel.records + sum(funnel.rejected.values()) == 8
    assert funnel.requests > 8  # some questions parsed and were answered
    judged = [
        r
        for outcome in outcomes
        for r in (
            *outcome.records,
            *(x.record for x in outcome.rejections if x.reason == "unsupported"),
        )
    ]
    for record in judged:
        assert record is not None and record.provenance.passage is not None


def test_a_reply_with_a_lone_surrogate_is_unreadable_not_a_crash() -> None:
    # Constrained JSON allows \\u escapes, and a random model writes half a surrogate pair.
    outcomes, _ = run(question='{"spørgsmål": "Hvem var kongen \\udebf i 1849?"}')
    assert {r.reason for o in outcomes for r in o.rejections} == {"invalid_question"}
    outcomes, _ = run(question='{"spørgsmål": "Hvem var kongen \\ud83d\\ude00 i 1849?"}')
    assert all(outcome.records for outcome in outcomes)  # a whole pair is a character
