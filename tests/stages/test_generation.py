"""Base generation: few-shot prompts per slot, the list parser, and a run on the tiny engine."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laerebogen.config.schema import Config, Generation
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import CompletionRequest, FinishReason, Request, Result
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from laerebogen.stages.core import Context, Outcome, drive
from laerebogen.stages.generation import (
    GenerationStage,
    completion_pattern,
    format_task,
    parse_tasks,
    prompt_slots,
)

SEEDS = list(seed_examples(load_seeds(packaged_seed_path())))
SETTINGS = Generation()
CONTEXT = Context(run_seed=11, round=2, shard=3, model="base")
GOOD = [
    (4, "Nævn tre danske øer i Østersøen.", "", "Bornholm, Lolland og Falster."),
    (5, "Klassificér anmeldelsen som positiv eller negativ.", "Maden var kold.", "Negativ."),
    (6, "Omskriv sætningen, så den bliver formel.", "Ses i morgen?", "Vi mødes i morgen."),
    (7, "Hvad er 15 % af 240?", "", "15 % af 240 er 36."),
    (
        8,
        "Skriv en Python-funktion, der lægger to tal sammen, og forklar den kort.",
        "",
        "def læg_sammen(a, b):\n    return a + b\n\nFunktionen giver summen af a og b.",
    ),
]
NO_FIELD_INPUT = "9. Instruktion: Forklar fotosyntese.\n9. Output:\nPlanter laver sukker af lys.\n"


def completion(*tasks: tuple[int, str, str, str]) -> str:
    """Tasks as the model writes them right after the prompt's ``4. Instruktion:``."""
    text = "".join(format_task(*task) for task in tasks)
    return text.removeprefix(f"###\n{tasks[0][0]}. Instruktion:")


def run(text: str, finish: FinishReason = "stop") -> tuple[Outcome, list[Request]]:
    """Drive one slot through the stage with a canned completion."""
    sent: list[Request] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(requests)
        detail = "prompt_too_long: 5000 tokens" if finish == "rejected" else ""
        return [Result(r.id, text, finish, 900, 300, detail=detail) for r in requests]

    stage = GenerationStage(SETTINGS, SEEDS)
    [outcome], _ = drive(stage, prompt_slots(2, 1), CONTEXT, generate)
    return outcome, sent


def reasons(outcome: Outcome) -> list[str]:
    return [rejection.reason for rejection in outcome.rejections]


def test_good_tasks_become_records_and_a_broken_one_a_rejection() -> None:
    outcome, [request] = run(completion(*GOOD) + "###\n" + NO_FIELD_INPUT)
    [slot] = prompt_slots(2, 1)
    assert [r.instruction for r in outcome.records] == [task[1] for task in GOOD]
    assert [(r.input, r.output) for r in outcome.records] == [task[2:] for task in GOOD]
    assert reasons(outcome) == ["missing_field"]
    assert outcome.rejections[0].source_id == slot.id
    assert "Forklar fotosyntese" in outcome.rejections[0].raw
    seed = CONTEXT.seed("generation", slot.id, "tasks")
    assert isinstance(request, CompletionRequest) and request.seed == seed
    for record in outcome.records:
        assert record.provenance.origin == "self-instruct"
        [step] = record.provenance.steps
        assert (step.stage, step.round, step.shard, step.model) == ("generation", 2, 3, "base")
        assert step.sampling_seed == seed and slot.id in step.note
    assert len({record.id for record in outcome.records}) == len(GOOD)


def test_records_keep_their_ids_in_a_rerun() -> None:
    text = completion(*GOOD)
    assert run(text)[0] == run(text)[0]


def test_the_request_uses_the_settings_and_stops_only_where_task_21_begins() -> None:
    _, [request] = run(completion(*GOOD))
    assert isinstance(request, CompletionRequest)
    assert request.sampling == SETTINGS.sampling
    assert request.stop == ("\n###\n21.",)
    assert request.constraint is None
    assert request.id.endswith("/tasks")


def test_the_prompt_is_the_shared_header_three_numbered_seeds_and_the_open_task_4() -> None:
    stage = GenerationStage(SETTINGS, SEEDS)
    prompts = [stage.prompt(stage.shots(slot, CONTEXT)) for slot in prompt_slots(0, 3)]
    for prompt in prompts:
        assert prompt.startswith(stage.header)
        assert "20 opgaver" in stage.header and "$" not in stage.header
        assert prompt.endswith("###\n4. Instruktion:")
        body = prompt.removeprefix(stage.header)
        assert re.findall(r"^(\d+)\. Instruktion:", body, re.M) == ["1", "2", "3", "4"]
        assert body.count("\n###\n") == 3 and body.startswith("###\n1. Instruktion: ")
    slot = prompt_slots(0, 1)[0]
    shots = stage.shots(slot, CONTEXT)
    for number, shot in enumerate(shots, start=1):
        expected = format_task(number, shot.instruction, shot.input, shot.output)
        assert expected in prompts[0]


def test_a_slot_picks_the_same_distinct_seeds_in_every_rerun_and_slots_differ() -> None:
    stage = GenerationStage(SETTINGS, SEEDS)
    slots = prompt_slots(0, 8)
    first = [stage.shots(slot, CONTEXT) for slot in slots]
    again = [
        GenerationStage(SETTINGS, SEEDS).shots(slot, Context(run_seed=11, round=2))
        for slot in slots
    ]
    assert first == again
    assert all(len({shot.id for shot in shots}) == 3 for shots in first)
    assert len({tuple(shot.id for shot in shots) for shots in first}) == len(slots)
    assert prompt_slots(0, 2, start=6) == slots[6:]


def test_seeds_and_list_length_are_checked() -> None:
    with pytest.raises(ValueError, match="2 seed examples"):
        GenerationStage(SETTINGS, SEEDS[:2])
    with pytest.raises(ValueError, match="tasks_per_prompt"):
        GenerationStage(Generation(tasks_per_prompt=3), SEEDS)


def test_numbering_must_continue_the_list() -> None:
    gap = completion(GOOD[0], GOOD[1], (7, *GOOD[3][1:]), (8, *GOOD[4][1:]))
    outcome, _ = run(gap)
    assert [r.instruction for r in outcome.records] == [GOOD[0][1], GOOD[1][1], GOOD[4][1]]
    assert reasons(outcome) == ["wrong_number"]
    assert "task 7 where 6 was due" in outcome.rejections[0].detail
    assert outcome.rejections[0].record is not None  # the parsed candidate is kept
    restart = completion(GOOD[0], GOOD[1], (1, *GOOD[2][1:]), (2, *GOOD[3][1:]))
    assert reasons(run(restart)[0]) == ["wrong_number", "wrong_number"]
    mixed = (
        completion(GOOD[0])
        + "###\n5. Instruktion: Hvad?\n6. Input:\n<intet input>\n5. Output:\nJa."
    )
    assert reasons(run(mixed)[0]) == ["wrong_number"]


def test_leaked_header_lines_are_not_tasks() -> None:
    stage = GenerationStage(SETTINGS, SEEDS)
    header_line = stage.header.splitlines()[-1]
    leaked = completion(GOOD[0]) + f"###\n{header_line}\n" + format_task(*GOOD[1])
    outcome, _ = run(leaked)
    assert [r.instruction for r in outcome.records] == [GOOD[0][1], GOOD[1][1]]
    assert reasons(outcome) == ["stray_text"]
    chatter = completion(GOOD[0]) + f"###\nHer er flere:\n{format_task(*GOOD[1])[4:]}"
    assert reasons(run(chatter)[0]) == ["stray_text"]
    rule = next(line for line in stage.header.splitlines() if line.startswith("- Alt"))
    in_output = completion(GOOD[0], (5, "Hvad er klokken?", "", f"Tolv.\n\n{rule}"))
    outcome, _ = run(in_output)
    assert reasons(outcome) == ["leaked_header"] and len(outcome.records) == 1


def test_the_last_task_of_a_cut_off_completion_is_dropped() -> None:
    cut = completion(*GOOD[:3]) + "###\n7. Instruktion: Hvad er 15 % af"
    outcome, _ = run(cut, "length")
    assert len(outcome.records) == 3 and reasons(outcome) == ["truncated"]
    assert outcome.rejections[0].raw.endswith("15 % af")
    whole = completion(*GOOD[:3])
    outcome, _ = run(whole, "length")
    assert len(outcome.records) == 2 and reasons(outcome) == ["truncated"]
    assert outcome.rejections[0].record is not None
    assert len(run(whole, "stop")[0].records) == 3


@pytest.mark.parametrize(
    "written", ["<intet input>", "  <Intet Input>  ", "<INTET INPUT>", "< intet  input >", ""]
)
def test_no_input_in_any_spelling_is_an_empty_input(written: str) -> None:
    text = f" Nævn en dansk ø.\n4. Input:\n{written}\n4. Output:\nFanø."
    [task], flaws = parse_tasks(text)
    assert (task.instruction, task.input, task.output, flaws) == (
        "Nævn en dansk ø.",
        "",
        "Fanø.",
        [],
    )


def test_numbers_in_the_text_neither_stop_nor_split_tasks() -> None:
    output = "Sommersolhverv falder den\n21. juni.\n2021. var året, hvor den var varmest."
    text = completion(GOOD[0], (5, "Hvornår er årets længste dag?", "", output), GOOD[2])
    stage = GenerationStage(SETTINGS, SEEDS)
    assert "\n21." in text and not any(stop in text for stop in stage.stop)
    outcome, _ = run(text)
    assert [r.output for r in outcome.records] == [GOOD[0][3], output, GOOD[2][3]]
    assert outcome.rejections == ()


def test_empty_fields_and_unusable_results_are_rejected_with_reasons() -> None:
    empty = completion(GOOD[0], (5, "", "", "Svar."), (6, "Spørgsmål?", "Tekst.", ""))
    assert reasons(run(empty)[0]) == ["empty_instruction", "empty_output"]
    assert reasons(run("")[0]) == ["missing_field"]
    outcome, _ = run("", "rejected")
    assert reasons(outcome) == ["prompt_too_long"] and "5000 tokens" in outcome.rejections[0].detail
    twice = completion(GOOD[0]) + "###\n" + format_task(*GOOD[1])[4:] + format_task(*GOOD[2])[4:]
    assert reasons(run(twice)[0]) == ["extra_field"]


def test_the_constraint_matches_the_list_format_and_forbids_separators_in_fields() -> None:
    pattern = completion_pattern(4, 20, 300, 700)

    def matches(*tasks: tuple[int, str, str, str]) -> bool:
        return re.fullmatch(pattern, completion(*tasks).removesuffix("\n")) is not None

    single_line = [task for task in GOOD if "\n" not in task[3]]
    assert matches(*single_line) and matches(GOOD[0])
    tasks, flaws = parse_tasks(completion(*single_line))
    assert len(tasks) == len(single_line) and flaws == []
    assert not matches(GOOD[0], (5, "Hvad # er?", "", "Ja."))
    assert not matches(GOOD[0], (5, "Hvad\x07er?", "", "Ja."))
    assert not matches(GOOD[0], (5, " Hvad?", "", "Ja."))
    assert not matches(GOOD[0], (6, *GOOD[1][1:]))
    assert not matches((4, "x" * 301, "", "Ja."))
    assert matches((4, "x" * 300, "", "Ja."))
    assert not matches(GOOD[4])  # a multi-line output
    stage = GenerationStage(Generation(constrained=True), SEEDS)
    assert stage.constraint is not None and stage.constraint.regex == pattern


FRAGMENTS = st.sampled_from(
    [
        "\n", "###", "\n###\n", " ", "4. Instruktion:", "5. Instruktion: ", "5. Input:\n",
        "5. Output:\n", "6. instruktion:", "4. Output:", "<intet input>", "21. juni", "2021.",
        "Liste med 20 opgaver:", "Hvad er 2 + 2?", "æøå",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=12)), max_size=40),
    st.integers(1, 30),
    st.booleans(),
)
def test_parsing_never_raises_and_keeps_only_complete_tasks(
    parts: list[str], first: int, truncated: bool
) -> None:
    tasks, flaws = parse_tasks("".join(parts), first, truncated=truncated)
    numbers = [task.number for task in tasks]
    assert numbers == sorted(set(numbers)) and all(number >= first for number in numbers)
    for task in tasks:
        assert task.instruction and task.output
        assert task.instruction == task.instruction.strip() and "<intet" not in task.input.lower()
    assert all(flaw.reason for flaw in flaws)
    if truncated:
        assert flaws and flaws[-1].reason == "truncated"


def test_tiny_engine_writes_parseable_lists(tiny_engine: Engine, tiny_config: Config) -> None:
    stage = GenerationStage(tiny_config.generation, SEEDS)
    assert stage.constraint is not None and stage.constraint.regex is not None
    results: list[Result] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        results.extend(tiny_engine.generate(requests))
        return results[-len(requests) :]

    slots = prompt_slots(0, 4)
    context = Context(run_seed=tiny_config.seed, model=tiny_engine.name)
    outcomes, funnel = drive(stage, slots, context, generate)
    for result in results:
        if result.finish_reason == "stop":
            assert re.fullmatch(stage.constraint.regex, result.text), result.text
    records = [record for outcome in outcomes for record in outcome.records]
    assert records and funnel.records == len(records)
    assert funnel.requests == sum(funnel.finished.values()) == len(slots)
    rejections = Counter(r.reason for outcome in outcomes for r in outcome.rejections)
    assert funnel.rejected == dict(rejections)
    assert len({record.id for record in records}) == len(records)
    for record in records:
        assert record.instruction and record.output
        assert record.provenance.origin == "self-instruct"
        assert record.provenance.steps[-1].stage == "generation"
        assert record.provenance.steps[-1].model == tiny_engine.name
