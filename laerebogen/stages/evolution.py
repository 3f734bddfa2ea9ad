"""Evol-Instruct: each record is rewritten into a harder task, or a new one, and answered.

One run of the stage is one generation. Per record the work draws one operation with the
record's own seed: the in-depth operations make a harder version of the same task (one more
constraint, more depth, concrete instead of general, explicit reasoning steps, input data in
a given format); ``in_breadth`` writes a rarer task in the same domain. The evolved task is
eliminated in order of cost: first by plain text rules (no change, ROUGE-L above
``MAX_SIMILARITY`` to the parent, leaked template words), then by the model's own yes/no
judgement of whether it adds anything, and finally by checks of its answer (refusal, only
stop words, leaked template words, cut off). The answer is asked for with the evolved task as
the user's message, exactly as the record will show it, under a short Danish system message
(Gemma folds it into that turn). A survivor is a new record one generation
further down; the parent is not emitted again, since the driver keeps every generation.

A record's ``provenance.operation`` names the operation; for ``complicate_input`` it also
names the data format, e.g. ``complicate_input:json``, so the dataset card can count formats.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Generator

import msgspec

from laerebogen.config.schema import Evolution, EvolutionOperation, Sampling
from laerebogen.inference.requests import ChatRequest, Constraint, Result
from laerebogen.records import Example, Message, Provenance, Rejection, child_id
from laerebogen.stages.answers import refusal_phrase, unfinished
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.text import (
    bounded_text,
    json_object,
    json_string,
    parse_json_object,
    render,
)

STAGE = "evolution"
# An evolved task this close to its parent (ROUGE-L of instruction and input) is the same task.
MAX_SIMILARITY = 0.9
# Bounded decoding (``bounded``): the most characters of the evolved instruction and of its
# input, about 150 Danish words, the most the merge filters keep, with room to spare. Free
# strings leave length to those filters.
MAX_FIELD_CHARS = 1200
IN_DEPTH: frozenset[EvolutionOperation] = frozenset(
    {"add_constraints", "deepen", "concretise", "increase_reasoning", "complicate_input"}
)
# The data formats of complicate_input: the label in provenance -> the name in the prompt.
FORMATS: dict[str, str] = {
    "json": "JSON",
    "csv": "CSV",
    "sql": "SQL",
    "python": "Python",
    "markdown_table": "Markdown-tabel",
    "yaml": "YAML",
    "html": "HTML",
    "latex": "LaTeX",
    "xml": "XML",
    "regex": "regulært udtryk",
}
TASK_FIELDS = {"instruktion": str, "input": str}
JUDGE_FIELDS = {"ny_information": bool}
JUDGE_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"ny_information": {"type": "boolean"}},
    "required": ["ny_information"],
    "additionalProperties": False,
}

# Every rejection reason of the stage, in the order of the checks.
REASONS: tuple[str, ...] = (
    "prompt_too_long",
    "truncated",
    "aborted",
    "invalid_json",
    "empty_instruction",
    "no_information_gain",
    "template_leak",
    "empty_answer",
    "refusal",
)
# Words of the rewriting frame that do not belong in a task or its answer: hash-marked headers
# such as "#Given Prompt#", "given/rewritten/omskrevne prompt", and the headers of this stage's
# own prompts at a line start ("Ny opgave:").
_TEMPLATE_LEAK = re.compile(
    r"#[ \t]*(?:[^\W\d_]+[ \t]+){0,2}prompt[ \t]*#"
    r"|\b(?:given|rewritten|omskrevne?|omskrevet)[ \t]+prompt\b"
    r"|^[ \t]*(?:ny|nye|sværere|omskrevne?|omskrevet|oprindelige?)[ \t]+(?:opgave|udgave)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_WORD = re.compile(r"[^\W_]+")
# Danish function words: an answer made of these alone says nothing.
STOP_WORDS = frozenset(
    """
    ad af al alle alt altid andet anden andre at bare blev blive bliver da de dem den denne
    dens der deres det dette dig din dine disse dit dog du efter eller en end ens er et for
    fordi fra få har havde have hele hen hendes her hos hun hvad hvem hver hvilke hvilken
    hvis hvor hvordan hvorfor hvornår i igen ikke ind ingen intet jeg jer jo kan kom kommer
    kun kunne lidt man mange med meget men mens mere mig min mine mit mod må måske ned nej
    noget nogen nogle nu når og også om op os over på sammen selv sig sin sine sit skal
    skulle som så sådan thi til ud under var vi vil ville vor vores være været
    """.split()
)


def task_pattern(max_tokens: int | None) -> str:
    """The regex of an evolved task's JSON; given ``max_tokens`` (for a model that never
    stops), bounded so that it finishes within them.

    Each field then gets at most ``max_tokens // 2`` characters: even the tiny random model
    writes about 2.5 characters per token inside a JSON string, real models more. A regex, not
    a schema, so that the task can hold line breaks and quotes (code, tables, CSV).
    """
    limit = None if max_tokens is None else min(MAX_FIELD_CHARS, max(1, max_tokens // 2))
    return json_object([("instruktion", json_string(limit, 1)), ("input", json_string(limit))])


def task_json(example: Example) -> str:
    """A task as the JSON object the prompts show and the model replies with."""
    task = {"instruktion": example.instruction, "input": example.input}
    return json.dumps(task, ensure_ascii=False, indent=2)


def evolve_prompt(record: Example, label: str) -> str:
    """The prompt of call 1 for operation ``label`` (with its format for complicate_input)."""
    operation, _, data_format = label.partition(":")
    fields = {"task": task_json(record), "rules": render(f"{STAGE}_rules").strip()}
    if operation in IN_DEPTH:
        directive = render(f"{STAGE}_{operation}", format=FORMATS.get(data_format, ""))
        return render(f"{STAGE}_in_depth", directive=directive.strip(), **fields)
    return render(f"{STAGE}_{operation}", **fields)


def template_leak(text: str) -> str | None:
    """The leaked template words in ``text``, or None."""
    match = _TEMPLATE_LEAK.search(text)
    return match[0].strip() if match else None


def is_empty_answer(answer: str) -> bool:
    """Whether ``answer`` holds nothing but punctuation and Danish stop words."""
    return all(word in STOP_WORDS for word in _WORD.findall(answer.lower()))


def _rejected(
    reason: str, source: Example, detail: str, candidate: Example | None = None, raw: str = ""
) -> Rejection:
    return Rejection(reason, source_id=source.id, detail=detail, record=candidate, raw=raw)


class EvolutionStage(Stage):
    """One generation of Evol-Instruct on the instruction-tuned model."""

    name = STAGE

    def __init__(self, settings: Evolution) -> None:
        if not settings.operations:
            raise ValueError("evolution.operations is empty: name at least one operation")
        self.settings = settings
        constrained = settings.constrained
        bound = settings.sampling.max_tokens if settings.bounded else None
        task = Constraint(regex=task_pattern(bound))
        self._task_constraint = task if constrained else None
        self._judge_constraint = Constraint(json_schema=JUDGE_SCHEMA) if constrained else None

    def operation(self, record_id: str, context: Context) -> str:
        """The operation label of a record: drawn uniformly, reproducible from its seed."""
        rng = random.Random(context.seed(STAGE, record_id, "operation"))
        operation = rng.choice(self.settings.operations)
        if operation == "complicate_input":
            return f"{operation}:{rng.choice(list(FORMATS))}"
        return operation

    def process(self, record: Example, context: Context) -> Work:
        label = self.operation(record.id, context)
        candidate = yield from self._evolve(record, label, context)
        if isinstance(candidate, Rejection):
            return Outcome(rejections=(candidate,))
        rejection = yield from self._judge(record, candidate, context)
        if rejection is not None:
            return Outcome(rejections=(rejection,))
        answered = yield from self._answer(record, candidate, context)
        if isinstance(answered, Rejection):
            return Outcome(rejections=(answered,))
        return Outcome(records=(answered,))

    def _request(
        self,
        record: Example,
        call: str,
        messages: tuple[Message, ...],
        context: Context,
        *,
        sampling: Sampling,
        constraint: Constraint | None,
    ) -> ChatRequest:
        return ChatRequest(
            id=f"{record.id}/{call}",
            messages=messages,
            sampling=sampling,
            seed=context.seed(STAGE, record.id, call),
            constraint=constraint,
        )

    def _evolve(
        self, record: Example, label: str, context: Context
    ) -> Generator[ChatRequest, Result, Example | Rejection]:
        """Call 1 and the cheap checks: the evolved task as a candidate record, or why not."""
        prompt = evolve_prompt(record, label)
        result = yield self._request(
            record,
            "evolve",
            (Message("user", prompt),),
            context,
            sampling=self.settings.sampling,
            constraint=self._task_constraint,
        )
        if problem := unfinished(result):
            return _rejected(problem[0], record, problem[1], raw=result.text)
        reply, why = parse_json_object(result.text, TASK_FIELDS)
        if reply is None:
            return _rejected("invalid_json", record, f"evolved task: {why}", raw=result.text)
        candidate = self._candidate(
            record, str(reply["instruktion"]).strip(), str(reply["input"]).strip(), label, context
        )
        if problem := _cheap_problem(record, candidate):
            return _rejected(problem[0], record, problem[1], candidate)
        return candidate

    def _candidate(
        self, record: Example, instruction: str, input: str, label: str, context: Context
    ) -> Example:
        """The evolved record before its answer, with its full provenance already.

        The step's seed is the answer call's, which is known before the call is made.
        """
        generation = record.provenance.generation + 1
        step = context.step(STAGE, context.seed(STAGE, record.id, "answer"), note=label)
        return Example(
            id=child_id(record.id, STAGE, generation),
            instruction=instruction,
            input=input,
            provenance=Provenance(
                origin="evolved",
                generation=generation,
                operation=label,
                parent_id=record.id,
                steps=(*record.provenance.steps, step),
                source=record.provenance.source,
                passage=record.provenance.passage,
            ),
        )

    def _judge(
        self, record: Example, candidate: Example, context: Context
    ) -> Generator[ChatRequest, Result, Rejection | None]:
        """Call 2: the model's judgement whether the evolved task adds anything."""
        prompt = render(f"{STAGE}_judge", original=task_json(record), evolved=task_json(candidate))
        result = yield self._request(
            record,
            "judge",
            (Message("user", prompt),),
            context,
            sampling=self.settings.sampling,
            constraint=self._judge_constraint,
        )
        if problem := unfinished(result):
            return _rejected(problem[0], record, problem[1], candidate, result.text)
        reply, why = parse_json_object(result.text, JUDGE_FIELDS)
        if reply is None:
            return _rejected("invalid_json", record, f"judgement: {why}", candidate, result.text)
        if not reply["ny_information"]:
            return _rejected("no_information_gain", record, "the model judged it", candidate)
        return None

    def _answer(
        self, record: Example, candidate: Example, context: Context
    ) -> Generator[ChatRequest, Result, Example | Rejection]:
        """Call 3 and the answer checks: the finished record, or why not."""
        messages = (
            Message("system", render(f"{STAGE}_answer")),
            Message("user", candidate.first_user_message()),
        )
        result = yield self._request(
            record,
            "answer",
            messages,
            context,
            sampling=self.settings.answer_sampling,
            constraint=(
                bounded_text(self.settings.answer_sampling.max_tokens)
                if self.settings.bounded
                else None
            ),
        )
        answer = result.text.strip()
        answered = msgspec.structs.replace(candidate, output=answer)
        if problem := unfinished(result):
            return _rejected(problem[0], record, problem[1], answered)
        if is_empty_answer(answer):
            return _rejected("empty_answer", record, "only punctuation and stop words", answered)
        if refusal_phrase(answer):
            return _rejected("refusal", record, f"{len(answer.split())} words", answered)
        if leak := template_leak(answer):
            return _rejected("template_leak", record, f"the answer contains {leak!r}", answered)
        return answered


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def _cheap_problem(record: Example, candidate: Example) -> tuple[str, str] | None:
    """Why an evolved task fails the text rules (reason, detail), or None if it passes."""
    from laerebogen.filtering.dedup import rouge_l

    if not candidate.instruction:
        return "empty_instruction", "the evolved instruction is empty"
    if _normalised(candidate.instruction) == _normalised(record.instruction):
        return "no_information_gain", "the instruction is unchanged"
    similarity = rouge_l(candidate.first_user_message(), record.first_user_message())
    if similarity > MAX_SIMILARITY:
        return "no_information_gain", f"ROUGE-L {similarity:.2f} to the parent"
    for field, text in (("instruction", candidate.instruction), ("input", candidate.input)):
        if leak := template_leak(text):
            return "template_leak", f"the {field} contains {leak!r}"
    return None
