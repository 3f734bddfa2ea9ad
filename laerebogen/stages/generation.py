"""Base generation: the Alpaca/Self-Instruct recipe on a pretrained (base) model.

Each *prompt slot* becomes one few-shot prompt: a Danish header that asks for a numbered list
of ``tasks_per_prompt`` tasks, then ``seeds_per_prompt`` seed tasks as its first items, and
the open header of the next item. The model writes the rest of the list; every well-formed
task in it becomes a record. The heuristic and language filters run later, in the merge job.

The list format, as the prompt shows it and the parser reads it::

    ###
    1. Instruktion: Hvad er ...?
    1. Input:
    <intet input>
    1. Output:
    Svaret ...

Generation stops at ``\\n###\\n21.`` (for 20 tasks): the separator line must come first, so
the stop can only match where task 21 would begin, never in text such as "21. juni" or
"2021." at the start of a line. Numbering is strict: a task is kept only when its number
is one more than the highest number so far, which drops a list that starts over (a base
model copying its few-shot examples) and the task after a skipped number (usually two tasks
run together).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import NamedTuple

from laerebogen.config.schema import Generation
from laerebogen.inference.requests import CompletionRequest, Constraint, Result
from laerebogen.records import Example, Provenance, Rejection, record_id
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.text import render

SEPARATOR = "###"
NO_INPUT = "<intet input>"
FIELDS = ("Instruktion", "Input", "Output")
SLOT_STAGE = "prompt-slot"
# A generated record's step note names the prompt slot it came from: ``slot <id>``.
SLOT_NOTE = "slot "
# Field lengths in characters under constrained decoding: about 40 and 100 Danish words.
INSTRUCTION_CHARS = 300
TEXT_CHARS = 700
MIN_LEAK_CHARS = 20  # header lines shorter than this are too common to count as a leak

_SEPARATOR_LINE = re.compile(r"^[ \t]*###[ \t]*$", re.MULTILINE)
_MARKER = re.compile(
    r"^[ \t]*(\d{1,4})[ \t]*\.[ \t]*(instruktion|input|output)[ \t]*:",
    re.MULTILINE | re.IGNORECASE,
)
_NO_INPUT = re.compile(r"\s*<\s*intet\s+input\s*>\s*", re.IGNORECASE)


class Task(NamedTuple):
    """One task read from a completion; ``position`` counts the blocks before it."""

    position: int
    number: int
    instruction: str
    input: str
    output: str


class Flaw(NamedTuple):
    """A block that is not kept: why, and the task when the block could be read as one."""

    reason: str
    detail: str
    raw: str
    task: Task | None = None


def prompt_slots(round: int, count: int, start: int = 0) -> list[Example]:
    """Placeholder inputs of one round: slot ``start + i`` becomes one few-shot prompt.

    Their ids depend only on round and index, so a rerun sends the same prompts.
    """
    return [
        Example(
            id=record_id(SLOT_STAGE, round, index), instruction="", provenance=Provenance("seed")
        )
        for index in range(start, start + count)
    ]


def format_task(number: int, instruction: str, input: str, output: str) -> str:
    """One item of the list as the prompt shows it, separator line first."""
    return (
        f"{SEPARATOR}\n{number}. {FIELDS[0]}: {instruction}\n"
        f"{number}. {FIELDS[1]}:\n{input or NO_INPUT}\n"
        f"{number}. {FIELDS[2]}:\n{output}\n"
    )


def completion_pattern(first: int, last: int, instruction_chars: int, text_chars: int) -> str:
    """The regular expression of a completion that continues the list at task ``first``.

    Task ``first`` is required, each later one up to ``last`` is optional after the one
    before. Fields are single lines without ``#`` or control characters (tabs aside), so
    only the format makes separators and markers; a field starts with a visible character,
    and its length is bounded so that constrained output ends within max_tokens.
    """

    def line(limit: int) -> str:
        return rf"[^\x00-\x20#][^\x00-\x08\x0a-\x1f#]{{0,{limit - 1}}}"

    def task(number: int) -> str:
        return (
            rf"{line(instruction_chars)}\n{number}\. {FIELDS[1]}:\n"
            rf"({NO_INPUT}|{line(text_chars)})\n{number}\. {FIELDS[2]}:\n{line(text_chars)}"
        )

    rest = ""
    for number in range(last, first, -1):
        rest = rf"(\n{SEPARATOR}\n{number}\. {FIELDS[0]}: {task(number)}{rest})?"
    return f" {task(first)}{rest}"


def parse_tasks(
    completion: str, first_number: int = 4, *, truncated: bool = False, header: str = ""
) -> tuple[list[Task], list[Flaw]]:
    """The tasks of a completion that starts right after ``"<first_number>. Instruktion:"``.

    Never raises. Blocks are the text between separator lines. A block is kept when it has
    exactly the three numbered fields in order, its number continues the list, and its
    instruction and output are not empty; ``<intet input>`` means an empty input. When the
    completion was cut off (``truncated``), its last block is dropped whatever it looks like.
    A field with a whole line of ``header`` in it is a leak of the prompt.
    """
    leaks = {line.strip() for line in header.splitlines() if len(line.strip()) >= MIN_LEAK_CHARS}
    text = f"{first_number}. {FIELDS[0]}:{completion}"
    blocks = [block for block in _SEPARATOR_LINE.split(text) if block.strip()]
    tasks: list[Task] = []
    flaws: list[Flaw] = []
    highest = first_number - 1
    for position, block in enumerate(blocks):
        number, task, reason, detail = _read_block(position, block)
        if truncated and position == len(blocks) - 1:
            reason, detail = "truncated", "the completion was cut off in this task"
        elif number is not None and number != highest + 1 and not reason:
            reason, detail = "wrong_number", f"task {number} where {highest + 1} was due"
        elif task is not None and not reason:
            reason, detail = _check_fields(task, leaks)
        if number is not None:
            highest = max(highest, number)
        if reason:
            flaws.append(Flaw(reason, detail, block, task))
        elif task is not None:
            tasks.append(task)
    return tasks, flaws


def _read_block(position: int, block: str) -> tuple[int | None, Task | None, str, str]:
    """The number and fields of one block, or a reason why it has no proper fields."""
    markers = list(_MARKER.finditer(block))
    if not markers:
        return None, None, "stray_text", "a block without numbered fields"
    number = int(markers[0][1])
    if block[: markers[0].start()].strip():
        return number, None, "stray_text", "text before the instruction"
    labels = tuple(marker[2].capitalize() for marker in markers)
    if labels != FIELDS:
        reason = "extra_field" if len(labels) > len(FIELDS) else "missing_field"
        return number, None, reason, f"fields {', '.join(labels)}"
    if any(int(marker[1]) != number for marker in markers):
        numbers = ", ".join(marker[1] for marker in markers)
        return number, None, "wrong_number", f"fields numbered {numbers}"
    ends = [marker.start() for marker in markers[1:]] + [len(block)]
    instruction, input, output = (
        block[marker.end() : end].strip() for marker, end in zip(markers, ends, strict=True)
    )
    if _NO_INPUT.fullmatch(input):
        input = ""
    return number, Task(position, number, instruction, input, output), "", ""


def _check_fields(task: Task, leaks: set[str]) -> tuple[str, str]:
    """Why a well-formed task is not usable, or empty strings."""
    if not task.instruction:
        return "empty_instruction", f"task {task.number} has no instruction"
    if not task.output:
        return "empty_output", f"task {task.number} has no output"
    fields = (task.instruction, task.input, task.output)
    if any(line.strip() in leaks for field in fields for line in field.splitlines()):
        return "leaked_header", f"task {task.number} repeats a line of the prompt's header"
    return "", ""


class GenerationStage(Stage):
    """Few-shot prompts to the base model, each continuing a list of tasks from three seeds."""

    name = "generation"

    def __init__(self, settings: Generation, seeds: Sequence[Example]) -> None:
        if len(seeds) < settings.seeds_per_prompt:
            raise ValueError(
                f"{len(seeds)} seed examples, but a prompt shows {settings.seeds_per_prompt}"
            )
        if settings.tasks_per_prompt <= settings.seeds_per_prompt:
            raise ValueError("tasks_per_prompt must be larger than seeds_per_prompt")
        self.settings = settings
        self.seeds = tuple(seeds)
        self.first_number = settings.seeds_per_prompt + 1
        self.header = render("generation_header", count=str(settings.tasks_per_prompt))
        self.stop = (f"\n{SEPARATOR}\n{settings.tasks_per_prompt + 1}.",)
        self.constraint = self._constraint() if settings.constrained else None

    def _constraint(self) -> Constraint:
        """The list format as a regex; one task's fields fit in max_tokens at a character
        per token, so even noise from a random model makes a whole task."""
        budget = self.settings.sampling.max_tokens // 4
        pattern = completion_pattern(
            self.first_number,
            self.settings.tasks_per_prompt,
            min(INSTRUCTION_CHARS, budget),
            min(TEXT_CHARS, budget),
        )
        return Constraint(regex=pattern)

    def shots(self, slot: Example, context: Context) -> list[Example]:
        """The seed examples a slot's prompt shows: distinct, and the same in every rerun."""
        rng = random.Random(context.seed(self.name, slot.id, "shots"))
        return rng.sample(self.seeds, self.settings.seeds_per_prompt)

    def prompt(self, shots: Sequence[Example]) -> str:
        """The header (shared by every prompt, for the prefix cache), the seeds, then the open
        instruction of the first task the model writes."""
        items = "".join(
            format_task(number, shot.instruction, shot.input, shot.output)
            for number, shot in enumerate(shots, start=1)
        )
        return f"{self.header}{items}{SEPARATOR}\n{self.first_number}. {FIELDS[0]}:"

    def process(self, record: Example, context: Context) -> Work:
        seed = context.seed(self.name, record.id, "tasks")
        result = yield CompletionRequest(
            id=f"{record.id}/tasks",
            prompt=self.prompt(self.shots(record, context)),
            sampling=self.settings.sampling,
            seed=seed,
            stop=self.stop,
            constraint=self.constraint,
        )
        return self._outcome(record, context, seed, result)

    def _outcome(self, slot: Example, context: Context, seed: int, result: Result) -> Outcome:
        if result.finish_reason == "rejected":
            rejection = Rejection("prompt_too_long", source_id=slot.id, detail=result.detail)
            return Outcome(rejections=(rejection,))
        tasks, flaws = parse_tasks(
            result.text,
            self.first_number,
            truncated=result.finish_reason != "stop",
            header=self.header,
        )
        provenance = Provenance(
            origin="self-instruct", steps=(context.step(self.name, seed, f"{SLOT_NOTE}{slot.id}"),)
        )

        def example(task: Task) -> Example:
            return Example(
                id=record_id(self.name, context.round, slot.id, task.position),
                instruction=task.instruction,
                input=task.input,
                output=task.output,
                provenance=provenance,
            )

        rejections = tuple(
            Rejection(
                flaw.reason,
                source_id=slot.id,
                detail=flaw.detail,
                record=example(flaw.task) if flaw.task else None,
                raw="" if flaw.task else flaw.raw,
            )
            for flaw in flaws
        )
        return Outcome(records=tuple(example(task) for task in tasks), rejections=rejections)
