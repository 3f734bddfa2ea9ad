"""Magpie: a user message from the bare template with the steering where it says, then its
answer; each way a message or answer fails is a rejection with its reason."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from laerebogen.config.schema import Config, Magpie, Sampling
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import (
    ChatRequest,
    FinishReason,
    Request,
    Result,
    UserTurnRequest,
)
from laerebogen.records import Message
from laerebogen.stages.core import Context, Outcome, drive
from laerebogen.stages.generation import prompt_slots
from laerebogen.stages.magpie import MagpieStage, openings
from tests.support.stages import CONTEXT

MESSAGE = "Hvordan laver jeg en god kartoffelsuppe til fire personer?"
ANSWER = "Skræl et kilo kartofler, kog dem med løg og bouillon i tyve minutter, og blend suppen."
SLOTS = prompt_slots(1, 4)
SYSTEM = Magpie(steering="system")
STARTED = Magpie(steering="user_start")


def replies(
    message: str = MESSAGE,
    answer: str = ANSWER,
    message_finish: FinishReason = "stop",
    answer_finish: FinishReason = "stop",
    settings: Magpie = SYSTEM,
) -> tuple[list[Outcome], list[Request]]:
    """Drive the stage over :data:`SLOTS` with the same message and answer for each slot."""
    sent: list[Request] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(requests)
        return [
            Result(r.id, message, message_finish, 20, 12)
            if isinstance(r, UserTurnRequest)
            else Result(r.id, answer, answer_finish, 30, 40)
            for r in requests
        ]

    outcomes, _ = drive(MagpieStage(settings), SLOTS, CONTEXT, generate)
    return outcomes, sent


def test_each_slot_becomes_a_task_of_the_magpie_source() -> None:
    outcomes, sent = replies()
    records = [record for outcome in outcomes for record in outcome.records]
    assert len(records) == len(SLOTS) and len({record.id for record in records}) == len(SLOTS)
    record = records[0]
    assert (record.instruction, record.input, record.output) == (MESSAGE, "", ANSWER)
    assert (record.provenance.origin, record.provenance.source) == ("magpie", "magpie")
    [step] = record.provenance.steps
    answer_seed = CONTEXT.seed("magpie", SLOTS[0].id, "answer")
    assert (step.stage, step.note, step.sampling_seed) == ("magpie", "steering system", answer_seed)
    users = [r for r in sent if isinstance(r, UserTurnRequest)]
    answers = [r for r in sent if isinstance(r, ChatRequest)]
    assert len(users) == len(answers) == len(SLOTS)
    # The answer is a plain chat on the message alone; every call has its own seed.
    assert answers[0].messages == (Message("user", MESSAGE),)
    assert len({request.seed for request in sent}) == len(sent)
    # The same slots give the same requests again.
    assert replies()[1] == sent


def test_steering_goes_where_the_config_says() -> None:
    _, sent = replies()
    system = next(r for r in sent if isinstance(r, UserTurnRequest))
    assert "dansk" in system.system and system.start == ""
    rest = " laver jeg en god kartoffelsuppe?"  # the model's next token has its space
    _, sent = replies(message=rest, settings=STARTED)
    started = [r for r in sent if isinstance(r, UserTurnRequest)]
    assert all(r.system == "" and r.start in openings() for r in started)
    # The opening is part of the message.
    outcomes, _ = replies(message=rest, settings=STARTED)
    first = outcomes[0].records[0]
    assert first.instruction == f"{started[0].start}{rest}"
    assert first.provenance.steps[0].note == "steering user_start"
    _, sent = replies(settings=Magpie(steering="none"))
    bare = next(r for r in sent if isinstance(r, UserTurnRequest))
    assert (bare.system, bare.start) == ("", "")


@pytest.mark.parametrize(
    ("message", "finish", "reason"),
    [
        ("Hej!", "stop", "empty_message"),
        ("<start_of_turn>user\nHvad er klokken i Danmark nu?", "stop", "template_leak"),
        ("Hvad er klokken? Assistent: Den er tolv.", "stop", "speaker_label"),
        (MESSAGE, "length", "truncated"),
        ("", "rejected", "prompt_too_long"),
    ],
)
def test_a_message_that_is_no_task_is_rejected(
    message: str, finish: FinishReason, reason: str
) -> None:
    outcomes, sent = replies(message=message, message_finish=finish)
    assert all(not outcome.records for outcome in outcomes)
    assert {r.reason for outcome in outcomes for r in outcome.rejections} == {reason}
    assert not any(isinstance(request, ChatRequest) for request in sent)  # no answer asked


@pytest.mark.parametrize(
    ("answer", "finish", "reason"),
    [("", "stop", "empty_answer"), (ANSWER, "length", "truncated"),
     ("Beklager, det kan jeg ikke hjælpe med.", "stop", "refusal")],
)  # fmt: skip
def test_an_answer_that_fails_rejects_the_task_with_it(
    answer: str, finish: FinishReason, reason: str
) -> None:
    outcomes, _ = replies(answer=answer, answer_finish=finish)
    [rejection] = outcomes[0].rejections
    assert rejection.reason == reason and rejection.record is not None
    assert rejection.record.instruction == MESSAGE


def test_bounded_replies_for_a_model_that_never_stops() -> None:
    settings = Magpie(steering="system", bounded=True, sampling=Sampling(max_tokens=64))
    _, sent = replies(settings=settings)
    assert all(request.constraint is not None for request in sent)
    assert all(request.constraint is None for request in replies()[1])
    assert msgspec.json.decode(msgspec.json.encode(sent[0]), type=Request) == sent[0]


def test_the_tiny_model_writes_messages_and_answers(
    tiny_engine: Engine, tiny_config: Config
) -> None:
    stage = MagpieStage(tiny_config.sources.magpie)
    context = Context(run_seed=tiny_config.seed, round=1, model=tiny_engine.name)
    outcomes, funnel = drive(stage, prompt_slots(1, 8), context, tiny_engine.generate)
    assert funnel.inputs == 8 and funnel.requests >= 8
    assert funnel.records + sum(funnel.rejected.values()) == 8
    for outcome in outcomes:
        for record in outcome.records:
            assert record.instruction and record.output and record.provenance.source == "magpie"
            assert record.provenance.steps[0].model == tiny_engine.name
