"""The Evol-Instruct stage: operations, elimination rules, answer checks and provenance."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laerebogen.config.schema import EVOLUTION_OPERATIONS, Config, Evolution, EvolutionOperation
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import ChatRequest, FinishReason, Request, Result
from laerebogen.records import Example, Message, Provenance, child_id
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from laerebogen.stages.answers import refusal_phrase
from laerebogen.stages.core import Context, Funnel, Outcome, drive
from laerebogen.stages.evolution import (
    FORMATS,
    REASONS,
    EvolutionStage,
    evolve_prompt,
    is_empty_answer,
    task_pattern,
)
from laerebogen.stages.text import bounded_text, render
from tests.support.records import make_example

CONTEXT = Context(run_seed=3, round=1, shard=2, model="instruct-model")
PARENT = make_example(0)  # has an input
EVOLVED = {
    "instruktion": "Forklar, hvorfor æbler og pærer er sunde, og sammenlign deres indhold af "
    "fibre og C-vitamin i en kort tabel.",
    "input": "",
}
ANSWER = (
    "Æbler og pærer er sunde, fordi de indeholder fibre, vitaminer og antioxidanter.\n\n"
    "| Frugt | Fibre | C-vitamin |\n|---|---|---|\n| Æble | 2,4 g | 5 mg |\n| Pære | 3,1 g | 4 mg |"
)
DEFAULT_REPLIES = {
    "evolve": json.dumps(EVOLVED, ensure_ascii=False),
    "judge": '{"ny_information": true}',
    "answer": ANSWER,
}
Reply = str | tuple[str, FinishReason]


def run(
    *records: Example, stage: EvolutionStage | None = None, **replies: Reply
) -> tuple[list[Outcome], Funnel, list[Request]]:
    """Drive the stage with canned replies per call name (a text, or a text and a finish)."""
    sent: list[Request] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(requests)
        results = []
        for request in requests:
            reply = {**DEFAULT_REPLIES, **replies}[request.id.rsplit("/", 1)[1]]
            text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
            detail = "prompt_too_long: 5000 tokens" if finish == "rejected" else ""
            results.append(Result(request.id, text, finish, 10, 5, detail=detail))
        return results

    outcomes, funnel = drive(
        stage or EvolutionStage(Evolution()), records or [PARENT], CONTEXT, generate
    )
    return outcomes, funnel, sent


def text_of(reply: Reply) -> str:
    return reply[0] if isinstance(reply, tuple) else reply


def evolve_reply(instruction: str, input: str = "") -> str:
    return json.dumps({"instruktion": instruction, "input": input}, ensure_ascii=False)


def test_a_good_evolution_is_a_new_record_one_generation_down() -> None:
    stage = EvolutionStage(Evolution())
    [outcome], funnel, sent = run(stage=stage)
    [record] = outcome.records
    label = stage.operation(PARENT.id, CONTEXT)
    answer_seed = CONTEXT.seed("evolution", PARENT.id, "answer")
    assert record.id == child_id(PARENT.id, "evolution", 1)
    assert (record.instruction, record.input, record.output) == (
        EVOLVED["instruktion"], "", ANSWER,
    )  # fmt: skip
    assert record.provenance == Provenance(
        origin="evolved",
        generation=1,
        operation=label,
        parent_id=PARENT.id,
        steps=(*PARENT.provenance.steps, CONTEXT.step("evolution", answer_seed, note=label)),
    )
    assert record.scores == {} and record.messages == ()
    assert [request.id.rsplit("/", 1)[1] for request in sent] == ["evolve", "judge", "answer"]
    assert funnel.records == 1 and funnel.requests == 3 and funnel.rejected == {}


def test_the_generation_counts_on_from_the_parent() -> None:
    provenance = msgspec.structs.replace(
        PARENT.provenance, origin="evolved", generation=2, parent_id="grandparent"
    )
    parent = msgspec.structs.replace(PARENT, id="gen2", provenance=provenance)
    [outcome], _, _ = run(parent)
    [record] = outcome.records
    assert record.id == child_id("gen2", "evolution", 3)
    assert (record.provenance.generation, record.provenance.parent_id) == (3, "gen2")


def test_requests_carry_seeds_sampling_and_constraints() -> None:
    config = Evolution()
    _, _, sent = run(stage=EvolutionStage(config))
    evolve, judge, answer = sent
    assert all(isinstance(request, ChatRequest) for request in sent)
    for request, call in zip(sent, ("evolve", "judge", "answer"), strict=True):
        assert request.id == f"{PARENT.id}/{call}"
        assert request.seed == CONTEXT.seed("evolution", PARENT.id, call)
    assert evolve.sampling == judge.sampling == config.sampling
    assert answer.sampling == config.answer_sampling
    assert evolve.constraint is not None and judge.constraint is not None
    assert evolve.constraint.regex == task_pattern(None)  # free strings: see json_string
    bounded = run(stage=EvolutionStage(Evolution(bounded=True)))[2][0]
    assert bounded.constraint is not None
    assert bounded.constraint.regex == task_pattern(config.sampling.max_tokens)
    assert answer.constraint is None  # free text: a real model ends its answer itself
    assert answer.messages == (
        Message("system", render("evolution_answer")),
        Message("user", EVOLVED["instruktion"]),
    )
    assert PARENT.instruction in evolve.messages[0].content
    assert PARENT.input in judge.messages[0].content
    assert EVOLVED["instruktion"] in judge.messages[0].content


def test_unconstrained_requests_have_no_constraint() -> None:
    _, _, sent = run(stage=EvolutionStage(Evolution(constrained=False)))
    assert [request.constraint for request in sent] == [None, None, None]


def test_the_answer_gets_the_evolved_input_after_a_blank_line() -> None:
    _, _, sent = run(evolve=evolve_reply("Sorter tallene stigende og forklar metoden.", "3,1,2"))
    answer = sent[-1]
    assert isinstance(answer, ChatRequest)
    assert answer.messages[-1].content == "Sorter tallene stigende og forklar metoden.\n\n3,1,2"


def test_bounded_answers_end_before_max_tokens_for_models_that_never_stop() -> None:
    config = Evolution(bounded=True)
    _, _, (_, _, answer) = run(stage=EvolutionStage(config))
    assert answer.constraint == bounded_text(config.answer_sampling.max_tokens)


def test_the_task_pattern_fits_max_tokens_caps_long_budgets_and_keeps_layout() -> None:
    small, large = re.compile(task_pattern(128)), re.compile(task_pattern(100_000))
    task = {"instruktion": "Ret koden.", "input": 'print("hej")\nprint("med dig")'}
    assert large.fullmatch(json.dumps(task, ensure_ascii=False, separators=(",", ":")))
    assert small.fullmatch('{"instruktion":"' + "a" * 64 + '","input":""}')
    assert not small.fullmatch('{"instruktion":"' + "a" * 65 + '","input":""}')
    assert not small.fullmatch('{"instruktion":"","input":""}')
    assert not large.fullmatch('{"instruktion":"' + "a" * 1201 + '","input":""}')


def test_operations_are_drawn_uniformly_and_reproducibly() -> None:
    stage = EvolutionStage(Evolution())
    ids = [f"record-{index}" for index in range(600)]
    labels = [stage.operation(record_id, CONTEXT) for record_id in ids]
    counts = Counter(label.partition(":")[0] for label in labels)
    assert set(counts) == set(EVOLUTION_OPERATIONS)
    assert min(counts.values()) >= 60  # 100 expected each
    assert labels == [stage.operation(record_id, CONTEXT) for record_id in ids]
    other = [stage.operation(record_id, Context(run_seed=4)) for record_id in ids]
    assert sum(a != b for a, b in zip(labels, other, strict=True)) > 300
    formats = {label.partition(":")[2] for label in labels if label.startswith("complicate")}
    assert formats == set(FORMATS)
    assert all(":" not in label for label in labels if not label.startswith("complicate"))


def test_only_configured_operations_are_drawn() -> None:
    stage = EvolutionStage(Evolution(operations=["deepen", "in_breadth"]))
    labels = {stage.operation(f"r{index}", CONTEXT) for index in range(50)}
    assert labels == {"deepen", "in_breadth"}
    with pytest.raises(ValueError, match="operations is empty"):
        EvolutionStage(Evolution(operations=[]))


@pytest.mark.parametrize("operation", EVOLUTION_OPERATIONS)
def test_every_operation_has_a_complete_danish_prompt(operation: str) -> None:
    labels = (
        [f"{operation}:{key}" for key in FORMATS]
        if operation == "complicate_input"
        else [operation]
    )
    for label in labels:
        prompt = evolve_prompt(PARENT, label)
        assert "$" not in prompt and "\n\n\n" not in prompt
        assert PARENT.instruction in prompt and '"instruktion"' in prompt
        assert "prompt" not in prompt.lower()  # nothing for the model to leak
        if label.startswith("complicate_input:"):
            assert FORMATS[label.partition(":")[2]] in prompt
    assert "sværere udgave" in evolve_prompt(PARENT, "deepen")
    assert "helt ny opgave" in evolve_prompt(PARENT, "in_breadth")


@pytest.mark.parametrize(
    ("operation", "phrase"),
    [("complicate_input", "Tilføj inddata i følgende format"), ("in_breadth", "helt ny opgave")],
)
def test_the_drawn_operation_decides_the_prompt_and_the_label(
    operation: EvolutionOperation, phrase: str
) -> None:
    stage = EvolutionStage(Evolution(operations=[operation]))
    [outcome], _, [evolve, *_] = run(stage=stage)
    [record] = outcome.records
    label = record.provenance.operation
    assert label == stage.operation(PARENT.id, CONTEXT) == record.provenance.steps[-1].note
    assert isinstance(evolve, ChatRequest) and phrase in evolve.messages[0].content
    if operation == "complicate_input":
        assert label is not None and label.partition(":")[2] in FORMATS
        assert FORMATS[label.partition(":")[2]] in evolve.messages[0].content
    else:
        assert label == operation


SAME = PARENT.instruction
REJECTIONS: list[tuple[str, dict[str, Reply], str, int]] = [
    (
        "identical instruction",
        {"evolve": evolve_reply(SAME, "Ny kilde.")},
        "no_information_gain",
        1,
    ),
    ("case and spaces", {"evolve": evolve_reply("  " + SAME.upper())}, "no_information_gain", 1),
    (
        "near copy",
        {"evolve": evolve_reply(SAME.replace("Forklar kort", "Forklar meget kort"), PARENT.input)},
        "no_information_gain",
        1,
    ),
    ("empty instruction", {"evolve": evolve_reply("  ", "data")}, "empty_instruction", 1),
    (
        "hash header",
        {"evolve": evolve_reply("#Omskrevet prompt#: Forklar fibre.")},
        "template_leak",
        1,
    ),
    ("given prompt", {"evolve": evolve_reply("Gør den given prompt sværere.")}, "template_leak", 1),
    (
        "rewritten",
        {"evolve": evolve_reply("Forklar fibre.", "#Rewritten Prompt#")},
        "template_leak",
        1,
    ),
    (
        "omskrevne",
        {"evolve": evolve_reply("Løs den omskrevne prompt om frugt.")},
        "template_leak",
        1,
    ),
    ("header", {"evolve": evolve_reply("Ny opgave: Forklar fibre i frugt.")}, "template_leak", 1),
    ("prose", {"evolve": "Her er den nye opgave: forklar fibre."}, "invalid_json", 1),
    ("array", {"evolve": "[1, 2]"}, "invalid_json", 1),
    ("missing input", {"evolve": '{"instruktion": "Forklar fibre."}'}, "invalid_json", 1),
    ("wrong type", {"evolve": '{"instruktion": 3, "input": ""}'}, "invalid_json", 1),
    ("evolve cut", {"evolve": ('{"instruktion": "Forkl', "length")}, "truncated", 1),
    ("evolve too long", {"evolve": ("", "rejected")}, "prompt_too_long", 1),
    ("evolve aborted", {"evolve": ("", "abort")}, "aborted", 1),
    ("judged no", {"judge": '{"ny_information": false}'}, "no_information_gain", 2),
    ("judge prose", {"judge": "Ja, den er ny."}, "invalid_json", 2),
    ("judge string", {"judge": '{"ny_information": "ja"}'}, "invalid_json", 2),
    ("judge cut", {"judge": ('{"ny_inf', "length")}, "truncated", 2),
    ("Danish refusal", {"answer": "Beklager, men det kan jeg ikke hjælpe med."}, "refusal", 3),
    ("English refusal", {"answer": "I'm sorry, but as an AI I cannot do that."}, "refusal", 3),
    ("empty answer", {"answer": "  \n"}, "empty_answer", 3),
    ("stop words", {"answer": "Det er det, og så er der ikke mere."}, "empty_answer", 3),
    ("answer leak", {"answer": "#Given Prompt#\nFrugt er sundt."}, "template_leak", 3),
    ("answer cut", {"answer": (ANSWER, "length")}, "truncated", 3),
    ("answer too long", {"answer": ("", "rejected")}, "prompt_too_long", 3),
]


@pytest.mark.parametrize(
    ("replies", "reason", "calls"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_each_elimination_rule(replies: dict[str, Reply], reason: str, calls: int) -> None:
    [outcome], funnel, sent = run(**replies)
    assert outcome.records == ()
    [rejection] = outcome.rejections
    assert rejection.reason == reason and rejection.source_id == PARENT.id
    assert rejection.detail and "\n" not in rejection.detail
    assert len(sent) == calls and funnel.rejected == {reason: 1}
    assert reason in REASONS
    if rejection.record is None:  # nothing parsed: the model's text is kept
        assert rejection.raw == text_of(replies["evolve"])
    else:
        assert rejection.record.provenance.parent_id == PARENT.id
    if calls == 3:  # the candidate is kept with its answer
        assert rejection.record is not None
        assert rejection.record.output == text_of(replies["answer"]).strip()


def test_a_too_long_prompt_keeps_the_engines_detail() -> None:
    [outcome], _, _ = run(evolve=("", "rejected"))
    assert outcome.rejections[0].detail == "prompt_too_long: 5000 tokens"


@pytest.mark.parametrize(
    "answer",
    [
        "Beklager, men jeg kan ikke hjælpe med det.",
        "Jeg beklager, det ved jeg ikke noget om.",
        "Det kan jeg desværre ikke svare på.",
        "Jeg er ikke i stand til at se billeder.",
        "Som en AI har jeg ingen meninger om det.",
        "Som sprogmodel kan jeg ikke have følelser, men her er et forsøg: frugt er godt.",
        "Jeg har ikke adgang til internettet.",
        "I'm sorry, but I can't help with that.",
        "As an AI language model, I do not have opinions.",
        "I cannot answer that question.",
    ],
)
def test_refusals_in_danish_and_english_are_caught(answer: str) -> None:
    assert refusal_phrase(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "Kære Hans\n\nVi beklager, at din pakke er forsinket. Den sendes i morgen.\n\nHilsen Mette",
        "Jeg kan ikke svømme.",
        "Frugt er sundt. " * 10
        + "Jeg beklager, men frugt kan ikke erstatte grøntsager. "
        + "Spis derfor også grønt hver dag. " * 10,
    ],
)
def test_apologies_translations_and_long_answers_are_no_refusals(answer: str) -> None:
    assert refusal_phrase(answer) is None


@pytest.mark.parametrize(
    ("answer", "empty"),
    [
        ("", True),
        (" ... !? ", True),
        ("Det er det, og så.", True),
        ("Hvad? Hvorfor ikke!", True),
        ("Ja.", False),
        ("42", False),
        ("København.", False),
        ("Det er rigtigt.", False),
    ],
)
def test_answers_of_only_stop_words_and_punctuation_are_empty(answer: str, empty: bool) -> None:
    assert is_empty_answer(answer) is empty


FINISH = st.sampled_from(["stop", "stop", "stop", "length", "abort", "rejected"])
EVOLVE_TEXT = st.one_of(
    st.text(),
    st.builds(evolve_reply, st.text(), st.text()),
    st.just(DEFAULT_REPLIES["evolve"]),
)
JUDGE_TEXT = st.one_of(
    st.text(), st.sampled_from(['{"ny_information": true}', '{"ny_information": false}'])
)


@settings(max_examples=300, deadline=None)
@given(
    evolve=st.tuples(EVOLVE_TEXT, FINISH),
    judge=st.tuples(JUDGE_TEXT, FINISH),
    answer=st.tuples(st.text(), FINISH),
)
def test_handling_never_raises_and_each_input_ends_once(
    evolve: tuple[str, FinishReason],
    judge: tuple[str, FinishReason],
    answer: tuple[str, FinishReason],
) -> None:
    [outcome], funnel, _ = run(evolve=evolve, judge=judge, answer=answer)
    assert len(outcome.records) + len(outcome.rejections) == 1
    assert set(funnel.rejected) <= set(REASONS)
    for record in outcome.records:
        assert record.instruction and record.output.strip()


def test_integration_on_the_tiny_engine(tiny_engine: Engine, tiny_config: Config) -> None:
    evolution = tiny_config.evolution
    assert evolution.constrained
    inputs = list(seed_examples(load_seeds(packaged_seed_path())))[:8]
    sent: list[str] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(request.id for request in requests)
        return tiny_engine.generate(requests)

    context = Context(run_seed=11, round=1, model=tiny_engine.name)
    stage = EvolutionStage(evolution)
    outcomes, funnel = drive(stage, inputs, context, generate)

    assert funnel.inputs == len(outcomes) == len(inputs)
    assert all(len(o.records) + len(o.rejections) == 1 for o in outcomes)
    assert funnel.records + sum(funnel.rejected.values()) == funnel.inputs
    assert funnel.requests == len(sent) == sum(funnel.finished.values())
    calls = Counter(request_id.rsplit("/", 1)[1] for request_id in sent)
    assert calls["evolve"] == len(inputs) and calls["judge"] >= 1
    assert set(funnel.rejected) <= set(REASONS) and "invalid_json" not in funnel.rejected
    # Constrained answers are bounded, so answers of the random model are not cut off.
    assert "truncated" not in funnel.rejected and calls["answer"] >= 1
    for parent, outcome in zip(inputs, outcomes, strict=True):
        for rejection in outcome.rejections:
            assert rejection.source_id == parent.id
        for record in outcome.records:
            label = stage.operation(parent.id, context)
            assert record.id == child_id(parent.id, "evolution", 1)
            assert record.instruction and record.output
            assert record.provenance.origin == "evolved"
            assert record.provenance.generation == 1 and record.provenance.parent_id == parent.id
            assert record.provenance.operation == label
            step = record.provenance.steps[-1]
            assert (step.stage, step.model, step.note) == ("evolution", tiny_engine.name, label)
            assert step.sampling_seed == context.seed("evolution", parent.id, "answer")
