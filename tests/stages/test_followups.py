"""The follow-up stage: turns added in order, a failed turn retried once, a second failure
ending the conversation, the prompts of both calls, arbitrary model text and the real engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laerebogen.config.schema import Config, Followups
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import ChatRequest, FinishReason, Request, Result
from laerebogen.records import Example, Message
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from laerebogen.stages.core import Context, Funnel, Outcome, drive
from laerebogen.stages.followups import (
    EARLIER_MESSAGE_CHARS,
    FollowupStage,
    answer_problem,
    choose_kind,
    followup_kinds,
    read_followup,
)
from laerebogen.stages.text import bounded_text
from tests.support.records import make_example

CONTEXT = Context(run_seed=11, round=1, shard=2, model="gemma")
QUESTIONS = (
    "Kan du give et konkret eksempel på det?",
    "Hvordan får jeg plads til det i en travl hverdag?",
    "Tak, det var nyttigt! Gælder det også for frosne bær?",
)
ANSWER = "Ja. Et æble til frokost og en håndfuld bær om aftenen giver fibre og vitaminer."
REFUSAL = "Beklager, men det kan jeg ikke hjælpe med."
FAILURES = {
    "invalid_followup",
    "empty_followup",
    "repeated_followup",
    "speaker_label",
    "empty_answer",
    "truncated",
    "refusal",
    "prompt_too_long",
}

Reply = tuple[str, FinishReason]


def besked(text: str) -> str:
    return json.dumps({"besked": text}, ensure_ascii=False)


def call_of(request: Request) -> tuple[str, int, int]:
    """``("user" | "answer", turn, retry)`` from a request id ``<record>/<call>-<turn>/<retry>``."""
    _, name, retry = request.id.split("/")
    call, turn = name.rsplit("-", 1)
    return call, int(turn), int(retry)


def scripted(replies: dict[str, Reply] | None = None) -> tuple[list[Request], Callable]:
    """A fake engine: good questions and answers unless ``replies`` (by request id) say else."""
    seen: list[Request] = []

    def generate(batch: Sequence[Request]) -> list[Result]:
        seen.extend(batch)
        results = []
        for request in batch:
            call, turn, _ = call_of(request)
            good = besked(QUESTIONS[turn % 3]) if call == "user" else f"{ANSWER} ({turn})"
            text, finish = (replies or {}).get(request.id, (good, "stop"))
            results.append(Result(request.id, text, finish, 10, 5))
        return results

    return seen, generate


def run(
    records: Sequence[Example],
    replies: dict[str, Reply] | None = None,
    stage_settings: Followups | None = None,
) -> tuple[list[Outcome], Funnel, list[Request]]:
    seen, generate = scripted(replies)
    stage = FollowupStage(stage_settings or Followups())
    outcomes, funnel = drive(stage, records, CONTEXT, generate)
    return outcomes, funnel, seen


def assert_alternates(messages: Sequence[Message]) -> None:
    roles = [message.role for message in messages]
    assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) % 2 == 0


def note(outcome: Outcome) -> str:
    return outcome.records[0].provenance.steps[-1].note


def test_three_turns_are_added_after_the_unchanged_first_exchange() -> None:
    record = make_example(0)
    [outcome], funnel, seen = run([record])
    [done] = outcome.records
    assert done.id == record.id and done.instruction == record.instruction
    assert done.output == record.output and done.input == record.input
    assert done.messages[:2] == record.conversation()
    assert len(done.messages) == 8
    assert_alternates(done.messages)
    assert [m.content for m in done.messages[2::2]] == list(QUESTIONS)
    assert [m.content for m in done.messages[3::2]] == [f"{ANSWER} ({turn})" for turn in range(3)]
    step = done.provenance.steps[-1]
    assert (step.stage, step.note, step.round, step.shard, step.model) == (
        "followups", "turns=3/3", 1, 2, "gemma",
    )  # fmt: skip
    assert step.sampling_seed == CONTEXT.seed("followups", record.id, "answer-2")
    assert done.provenance.steps[:-1] == record.provenance.steps
    assert outcome.rejections == ()
    assert [call_of(request)[:2] for request in seen] == [
        ("user", 0), ("answer", 0), ("user", 1), ("answer", 1), ("user", 2), ("answer", 2),
    ]  # fmt: skip
    assert (funnel.inputs, funnel.records, funnel.requests, funnel.rejected) == (1, 1, 6, {})


def test_a_conversation_that_is_already_multi_turn_gets_more_turns() -> None:
    record = make_example(1, followups=True)
    [outcome], _, seen = run([record])
    assert outcome.records[0].messages[:4] == record.messages
    assert len(outcome.records[0].messages) == 10
    assert "Bruger: Kan du give et eksempel?" in seen[0].messages[0].content


def test_a_failed_turn_is_retried_with_new_seeds_and_then_succeeds() -> None:
    record = make_example(0)
    broken = {f"{record.id}/user-1/0": ('{"besked": "Hvorfor', "length")}
    [outcome], funnel, seen = run([record], broken)
    assert note(outcome) == "turns=3/3" and len(outcome.records[0].messages) == 8
    [rejection] = outcome.rejections
    assert (rejection.reason, rejection.source_id) == ("invalid_followup", record.id)
    assert rejection.raw == '{"besked": "Hvorfor' and rejection.record is None
    assert rejection.detail.startswith("turn 2, try 1, user message:")
    tries = [request for request in seen if call_of(request)[:2] == ("user", 1)]
    assert [call_of(request)[2] for request in tries] == [0, 1]
    assert tries[0].seed != tries[1].seed
    assert tries[1].seed == CONTEXT.seed("followups", record.id, "user-1", 1)
    assert tries[0].messages == tries[1].messages  # the same kind of follow-up is asked again
    assert funnel.requests == 7 and funnel.rejected == {"invalid_followup": 1}


def test_a_turn_that_fails_twice_ends_the_conversation_with_the_turns_it_has() -> None:
    record = make_example(2)
    broken: dict[str, Reply] = {
        f"{record.id}/answer-1/0": (ANSWER, "length"),
        f"{record.id}/answer-1/1": (REFUSAL, "stop"),
    }
    [outcome], funnel, seen = run([record], broken)
    [done] = outcome.records
    assert note(outcome) == "turns=1/3" and len(done.messages) == 4
    assert done.messages[:2] == record.conversation()
    assert done.provenance.steps[-1].sampling_seed == CONTEXT.seed(
        "followups", record.id, "answer-0"
    )
    assert [r.reason for r in outcome.rejections] == ["truncated", "refusal", "stopped_early"]
    assert all(r.source_id == record.id for r in outcome.rejections)
    truncated, refusal, stopped = outcome.rejections
    assert truncated.detail == "turn 2, try 1, answer: finish_reason length"
    assert refusal.record is not None and refusal.record.messages[-1].content == REFUSAL
    assert stopped.detail == "turns=1/3: turn 2 failed twice"
    assert not any(call_of(request)[1] == 2 for request in seen)
    assert funnel.records == 1
    assert funnel.rejected == {"truncated": 1, "refusal": 1, "stopped_early": 1}


def test_a_first_turn_that_fails_twice_keeps_the_first_exchange() -> None:
    record = make_example(3)
    question = besked(record.instruction)  # asks the first question again
    broken: dict[str, Reply] = {
        f"{record.id}/user-0/0": (question, "stop"),
        f"{record.id}/user-0/1": ("", "rejected"),
    }
    [outcome], _, _ = run([record], broken)
    assert outcome.records[0].messages == record.conversation()
    assert outcome.records[0].provenance.steps[-1].sampling_seed is None
    assert note(outcome) == "turns=0/3"
    reasons = [r.reason for r in outcome.rejections]
    assert reasons == ["repeated_followup", "prompt_too_long", "stopped_early"]


def test_the_user_message_prompt_shows_the_conversation_and_the_chosen_kind() -> None:
    record = make_example(0)
    _, _, seen = run([record])
    first, second = (r for r in seen if call_of(r)[0] == "user" and call_of(r)[1] < 2)
    assert isinstance(first, ChatRequest) and len(first.messages) == 1
    prompt = first.messages[0].content
    assert first.messages[0].role == "user"
    assert f"Bruger: {record.instruction}" in prompt and record.input in prompt
    assert f"Assistent: {record.output.strip()}" in prompt
    name, description = choose_kind(CONTEXT.seed("followups", record.id, "kind-0"))
    assert f"»{name}«" in prompt and description in prompt
    assert '{"besked": "..."}' in prompt and "$" not in prompt
    assert first.sampling == Followups().sampling
    assert first.constraint is not None and first.constraint.regex is not None
    pattern = re.compile(first.constraint.regex)
    assert pattern.fullmatch('{"besked":"Og \\"citater\\"?\\nTak."}')  # quotes, line breaks
    assert pattern.fullmatch('{"besked":"' + "a" * 5000 + '"}')  # free: see json_string
    assert not pattern.fullmatch('{"besked":""}')
    assert f"Bruger: {QUESTIONS[0]}\n\nAssistent: {ANSWER} (0)" in second.messages[0].content


def test_kinds_vary_between_records_and_turns() -> None:
    kinds = {
        choose_kind(CONTEXT.seed("followups", make_example(i).id, f"kind-{turn}"))[0]
        for i in range(20)
        for turn in range(3)
    }
    assert kinds == {name for name, _ in followup_kinds()}
    assert len(followup_kinds()) == 6


def test_very_long_earlier_turns_are_shortened_in_the_prompt_only() -> None:
    long_answer = "Frugt er godt for både krop og sind, især om vinteren. " * 200
    record = msgspec.structs.replace(make_example(1), output=long_answer)
    [outcome], _, seen = run([record])
    prompts = [r.messages[0].content for r in seen if call_of(r)[0] == "user"]
    assert all("[…]" in prompt and len(prompt) < 8000 for prompt in prompts)
    assert len(prompts[2]) < len(prompts[0])  # two turns later the long answer is "earlier"
    assert long_answer[: EARLIER_MESSAGE_CHARS // 2] in prompts[2]
    answers = [r for r in seen if call_of(r)[0] == "answer"]
    assert all(r.messages[1].content == long_answer for r in answers)  # type: ignore[union-attr]
    assert outcome.records[0].messages[1].content == long_answer


def test_bounded_answers_end_before_max_tokens_for_models_that_never_stop() -> None:
    settings = Followups(bounded=True)
    _, _, seen = run([make_example(4)], stage_settings=settings)
    answers = [r for r in seen if call_of(r)[0] == "answer"]
    assert answers
    assert all(r.constraint == bounded_text(settings.answer_sampling.max_tokens) for r in answers)
    [message, *_] = [r for r in seen if call_of(r)[0] != "answer"]
    assert message.constraint is not None and message.constraint.regex is not None
    pattern = re.compile(message.constraint.regex)
    longest = settings.sampling.max_tokens // 2
    assert pattern.fullmatch('{"besked":"' + "a" * longest + '"}')
    assert not pattern.fullmatch('{"besked":"' + "a" * (longest + 1) + '"}')


def test_the_answer_request_is_the_real_conversation_ending_with_the_new_message() -> None:
    record = make_example(4)
    [outcome], _, seen = run([record])
    answers = [r for r in seen if call_of(r)[0] == "answer"]
    for turn, request in enumerate(answers):
        assert isinstance(request, ChatRequest)
        assert request.constraint is None  # free text: a real model ends its answer itself
        assert request.sampling == Followups().answer_sampling
        assert request.messages == outcome.records[0].messages[: 3 + 2 * turn]
        assert_alternates(request.messages[:-1])
        assert request.messages[-1] == Message("user", QUESTIONS[turn])


def test_without_constraint_the_plain_message_is_cleaned() -> None:
    record = make_example(5)
    plain = Followups(constrained=False)
    replies: dict[str, Reply] = {
        f"{record.id}/user-0/0": ('Bruger: "Hvad med pærer?"\nAssistent: Pærer er sunde.', "stop"),
        f"{record.id}/user-1/0": ("**Bruger:** Og hvad med bananer?", "stop"),
        f"{record.id}/user-2/0": ("„Tak! Må hunde spise æbler?“", "stop"),
    }
    [outcome], _, seen = run([record], replies, plain)
    assert [m.content for m in outcome.records[0].messages[2::2]] == [
        "Hvad med pærer?", "Og hvad med bananer?", "Tak! Må hunde spise æbler?",
    ]  # fmt: skip
    prompt = seen[0].messages[0].content  # type: ignore[union-attr]
    assert seen[0].constraint is None and "»Bruger:«" in prompt and "JSON" not in prompt


@pytest.mark.parametrize(
    ("text", "finish", "constrained", "expected"),
    [
        (besked("Kan du uddybe det med fibrene?"), "stop", True, "Kan du uddybe det med fibrene?"),
        ('```json\n{"besked": "Hvorfor dog?"}\n```', "stop", True, "Hvorfor dog?"),
        (besked("Bruger: „Hvorfor det?“"), "stop", True, "Hvorfor det?"),
        ("Hvad med pærer?", "stop", False, "Hvad med pærer?"),
        ("Besked: 'Hvad med pærer?'", "stop", False, "Hvad med pærer?"),
        (besked(""), "stop", True, "empty_followup"),
        (besked('  "" '), "stop", True, "empty_followup"),
        ("...", "stop", False, "empty_followup"),
        ("Hvorfor? 🙂", "stop", False, "empty_followup"),
        ("Hvad med pærer? Assistent: De er sunde.", "stop", False, "speaker_label"),
        ("Hvad med pærer?", "stop", True, "invalid_followup"),
        ('{"besked": 3}', "stop", True, "invalid_followup"),
        ('["Hvad med pærer?"]', "stop", True, "invalid_followup"),
        ('{"besked": "Hvad med', "length", True, "invalid_followup"),
        ("Hvad med pærer og", "length", False, "invalid_followup"),
        ("Bruger:", "stop", False, "empty_followup"),
        ("Hvorfor? " * 80, "stop", False, "invalid_followup"),
        ("", "rejected", True, "prompt_too_long"),
        (besked("Hvorfor  er ÆBLER sunde?"), "stop", True, "repeated_followup"),
        ("Kan du give et konkret eksempel på det, tak?", "stop", False, "repeated_followup"),
    ],
)
def test_reading_the_user_message(
    text: str, finish: FinishReason, constrained: bool, expected: str
) -> None:
    earlier = ["Hvorfor er æbler sunde?", "Kan du give et konkret eksempel på det?"]
    message, problem = read_followup(Result("r", text, finish, 1, 1), constrained, earlier)
    assert (problem.reason if problem else message) == expected


@pytest.mark.parametrize(
    ("text", "finish", "expected"),
    [
        (ANSWER, "stop", None),
        ("  \n ", "stop", "empty_answer"),
        (ANSWER, "length", "truncated"),
        (ANSWER, "abort", "truncated"),
        ("", "rejected", "prompt_too_long"),
        (REFUSAL, "stop", "refusal"),
        ("Jeg kan desværre ikke give medicinske råd.", "stop", "refusal"),
        ("Som en AI har jeg ingen smagssans.", "stop", "refusal"),
        ("I'm sorry, but I cannot answer that.", "stop", "refusal"),
        ("Beklager forvirringen! " + ANSWER * 8, "stop", None),  # long: an answer
        ("Kanelsnegle er bedst lune.", "stop", None),
        ("Pærer er sunde. Bruger: Tak! Og æbler?", "stop", "speaker_label"),
        ("Log ind som **Bruger**: skriv dit navn.", "stop", None),
    ],
)
def test_checking_the_answer(text: str, finish: FinishReason, expected: str | None) -> None:
    problem = answer_problem(Result("r", text, finish, 1, 1))
    assert (problem.reason if problem else None) == expected


def test_no_turns_makes_no_calls() -> None:
    def generate(batch: Sequence[Request]) -> list[Result]:
        raise AssertionError("no calls expected")

    record = make_example(6)
    stage = FollowupStage(Followups(turns=0))
    [outcome], funnel = drive(stage, [record], CONTEXT, generate)
    assert outcome.records[0].messages == record.conversation()
    assert note(outcome) == "turns=0/0" and outcome.rejections == ()
    assert funnel.requests == 0 and funnel.records == 1


def test_request_ids_are_unique_in_every_batch_and_seeds_differ() -> None:
    records = [make_example(i) for i in range(5)]
    broken = {f"{records[1].id}/answer-0/0": ("", "stop")}
    batches: list[list[Request]] = []
    _, generate = scripted(broken)

    def recording(batch: Sequence[Request]) -> list[Result]:
        batches.append(list(batch))
        return generate(batch)

    drive(FollowupStage(Followups()), records, CONTEXT, recording)
    assert all(len({r.id for r in batch}) == len(batch) for batch in batches)
    seeds = [r.seed for batch in batches for r in batch]
    assert len(set(seeds)) == len(seeds)


def test_importing_the_stage_leaves_numba_unloaded() -> None:
    code = "import sys, laerebogen.stages.followups; print('numba' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def model_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=300),
        st.text(max_size=200).map(besked),
        st.sampled_from((*QUESTIONS, REFUSAL, "", '{"besked": "', "Bruger:", "```json\n{}\n```")),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), constrained=st.booleans(), turns=st.integers(0, 3))
def test_any_model_text_gives_exactly_one_record(
    data: st.DataObject, constrained: bool, turns: int
) -> None:
    finishes = st.sampled_from(["stop", "stop", "stop", "length", "abort", "rejected"])

    def generate(batch: Sequence[Request]) -> list[Result]:
        return [Result(r.id, data.draw(model_text()), data.draw(finishes), 3, 2) for r in batch]

    record = make_example(data.draw(st.integers(0, 5)), followups=data.draw(st.booleans()))
    stage = FollowupStage(Followups(turns=turns, constrained=constrained))
    [outcome], funnel = drive(stage, [record], CONTEXT, generate)
    [done] = outcome.records
    assert done.id == record.id
    assert done.messages[: len(record.conversation())] == record.conversation()
    assert_alternates(done.messages)
    added = (len(done.messages) - len(record.conversation())) // 2
    assert note(outcome) == f"turns={added}/{turns}"
    reasons = [r.reason for r in outcome.rejections]
    assert set(reasons) <= FAILURES | {"stopped_early"}
    stopped = reasons.count("stopped_early")
    assert stopped == (added < turns)
    failures = len(reasons) - stopped
    assert 2 * stopped <= failures <= 2 * stopped + added  # a kept turn failed at most once
    assert funnel.records == 1
    assert all(r.source_id == record.id for r in outcome.rejections)


def test_the_real_engine_gives_one_conversation_per_record(
    tiny_engine: Engine, tiny_config: Config
) -> None:
    records = list(seed_examples(load_seeds(packaged_seed_path())))[:6]
    stage = FollowupStage(tiny_config.followups)
    assert stage.settings.constrained and stage.settings.turns == 1
    context = Context(run_seed=tiny_config.seed, round=1, model=tiny_engine.name)
    outcomes, funnel = drive(stage, records, context, tiny_engine.generate)
    assert (funnel.inputs, funnel.records) == (6, 6)
    assert funnel.requests == sum(funnel.finished.values())
    assert sum(funnel.rejected.values()) == sum(len(outcome.rejections) for outcome in outcomes)
    assert funnel.requests > len(records)  # some user messages parsed and got an answer
    for record, outcome in zip(records, outcomes, strict=True):
        [done] = outcome.records
        assert done.id == record.id and done.messages[:2] == record.conversation()
        assert_alternates(done.messages)
        added = len(done.messages) // 2 - 1
        step = done.provenance.steps[-1]
        assert (step.stage, step.note, step.model) == (
            "followups", f"turns={added}/1", tiny_engine.name,
        )  # fmt: skip
        reasons = [rejection.reason for rejection in outcome.rejections]
        assert set(reasons) <= FAILURES | {"stopped_early"}
        if added:
            assert len(reasons) <= 1 and "stopped_early" not in reasons
        else:
            assert len(reasons) == 3 and reasons[-1] == "stopped_early"
    stopped = sum(len(outcome.records[0].messages) == 2 for outcome in outcomes)
    assert funnel.rejected.get("stopped_early", 0) == stopped
    # Constrained answers are bounded, so even the random model's turns are not cut off.
    assert stopped < len(records)
