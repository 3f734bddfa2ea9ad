"""Questions grounded in real Danish texts: a question a passage answers, and its answer.

Per passage of the corpus the model writes one question of a drawn kind (hvem, hvad, hvor,
hvornår, hvorfor, hvordan, or a "forklar"/"sammenlign" task), then answers it from the
passage, and a judge call checks that everything the answer claims is in the passage: an
answer it does not support is rejected (``unsupported``), the cheapest cure for invented
facts. The form is drawn per record too: ``reading`` (reading comprehension: the passage is
the task's input) or ``closed_book`` (the user never sees the passage; question and answer
must not mention it, and the answer still rests on it). Kind and form are in the provenance
step's note (``"<kind> <form>"``), the passage's file and id in ``provenance.passage``.
"""

from __future__ import annotations

import functools
import random
import re

from laerebogen.config.schema import Grounded
from laerebogen.inference.requests import ChatRequest, Constraint, Result
from laerebogen.records import Example, Message, Provenance, Rejection, child_id
from laerebogen.stages.answers import too_few_words, unfinished
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.followups import Problem, answer_problem, clean_followup
from laerebogen.stages.text import (
    bounded_text,
    json_object,
    json_string,
    load_prompt,
    parse_json_object,
    render,
    shorten,
)

FORMS = ("reading", "closed_book")
MAX_QUESTION_CHARS = 400
MIN_QUESTION_WORDS = 3
VERDICTS = ("ja", "nej")
# Words by which a closed-book question or answer points at a text the user never saw.
_MENTIONS_TEXT = re.compile(r"\b(?:teksten|tekststykket|afsnittet|passagen|artiklen)\b", re.I)


@functools.cache
def question_kinds() -> dict[str, str]:
    """Each kind of question and what a question of it is, from its prompt file."""
    lines = load_prompt("grounded_kinds").template.splitlines()
    pairs = (line.split(":", 1) for line in lines if line.strip())
    return {name.strip(): description.strip() for name, description in pairs}


def draw(seed: int, kinds: list[str], closed_book_share: float) -> tuple[str, str]:
    """The kind and the form of one record's question, from its own seed."""
    rng = random.Random(seed)
    kind = rng.choice(kinds)
    return kind, FORMS[1] if rng.random() < closed_book_share else FORMS[0]


def read_question(result: Result, constrained: bool, form: str) -> tuple[str, Problem | None]:
    """The question in a reply, or why there is none."""
    if found := unfinished(result):
        return "", Problem(*found)
    text = result.text
    if constrained:
        reply, reason = parse_json_object(text, {"spørgsmål": str})
        if reply is None:
            return "", Problem("invalid_question", f"not the JSON asked for: {reason}")
        text = str(reply["spørgsmål"])
    question = clean_followup(text.strip().split("\n", 1)[0])
    if short := too_few_words(question, MIN_QUESTION_WORDS):
        return "", Problem("invalid_question", short)
    if len(question) > MAX_QUESTION_CHARS:
        return "", Problem("invalid_question", f"{len(question)} characters")
    if form == "closed_book" and (found_text := _MENTIONS_TEXT.search(question)):
        return "", Problem("mentions_text", f"a closed-book question names {found_text.group()!r}")
    return question, None


class GroundedStage(Stage):
    """Question, answer and judgement per corpus passage.

    Rejections: ``invalid_question``, ``mentions_text`` (a closed-book question or answer that
    names the text), ``unsupported`` (the judge found the answer not in the passage),
    ``invalid_judgement``, the answer's reasons of
    :func:`~laerebogen.stages.followups.answer_problem`, and ``truncated`` /
    ``prompt_too_long`` of any call.
    """

    name = "grounded"

    def __init__(self, settings: Grounded) -> None:
        self.settings = settings
        limit = max(1, settings.sampling.max_tokens // 4) if settings.bounded else None
        question = json_object([("spørgsmål", json_string(limit, 1))])
        verdict = json_object(
            [("understøttet", '"(?:ja|nej)"'), ("begrundelse", json_string(limit))]
        )
        self.question_constraint = Constraint(regex=question) if settings.constrained else None
        self.judge_constraint = Constraint(regex=verdict) if settings.constrained else None
        self.answer_constraint = (
            bounded_text(settings.answer_sampling.max_tokens) if settings.bounded else None
        )
        self.format = render(
            "grounded_format_json" if settings.constrained else "grounded_format_text"
        ).strip()

    def process(self, record: Example, context: Context) -> Work:
        passage = record.input
        kind, form = draw(
            context.seed(self.name, record.id, "draw"),
            self.settings.kinds,
            self.settings.closed_book_share,
        )
        prompt = render(
            "grounded_question",
            kind=question_kinds()[kind],
            form=render(f"grounded_form_{form}").strip(),
            passage=passage,
            format=self.format,
        )
        result = yield self._chat(record, context, "question", prompt, self.question_constraint)
        question, problem = read_question(result, self.settings.constrained, form)
        if problem:
            return _rejected(problem, record, "question", raw=result.text)
        answer_seed = context.seed(self.name, record.id, "answer")
        prompt = render(f"grounded_answer_{form}", question=question, passage=passage)
        result = yield self._chat(record, context, "answer", prompt, self.answer_constraint)
        task = Example(
            id=child_id(record.id, self.name),
            instruction=question,
            input=passage if form == "reading" else "",
            output=result.text.strip(),
            provenance=Provenance(
                origin="grounded",
                source="grounded",
                passage=record.provenance.passage,
                steps=(context.step(self.name, answer_seed, f"{kind} {form}"),),
            ),
        )
        if problem := answer_problem(result):
            return _rejected(problem, record, "answer", task)
        if form == "closed_book" and (found := _MENTIONS_TEXT.search(task.output)):
            return _rejected(Problem("mentions_text", f"names {found.group()!r}"), record,
                             "answer", task)  # fmt: skip
        prompt = render("grounded_judge", passage=passage, question=question, answer=task.output)
        result = yield self._chat(record, context, "judge", prompt, self.judge_constraint)
        if problem := judge_problem(result):
            return _rejected(problem, record, "judge", task)
        return Outcome(records=(task,))

    def _chat(
        self,
        record: Example,
        context: Context,
        call: str,
        prompt: str,
        constraint: Constraint | None,
    ) -> ChatRequest:
        """One call of a record's work: the prompt as a user message, seeded by its name."""
        sampling = self.settings.answer_sampling if call == "answer" else self.settings.sampling
        return ChatRequest(
            id=f"{record.id}/{call}",
            messages=(Message("user", prompt.strip()),),
            sampling=sampling,
            seed=context.seed(self.name, record.id, call),
            constraint=constraint,
        )


def judge_problem(result: Result) -> Problem | None:
    """Why the judge's reply does not let the task pass (``unsupported`` when it says no)."""
    if found := unfinished(result):
        return Problem(*found)
    reply, reason = parse_json_object(result.text, {"understøttet": str})
    if reply is None:
        return Problem("invalid_judgement", f"not the JSON asked for: {reason}")
    verdict = str(reply["understøttet"]).strip().casefold()
    if verdict not in VERDICTS:
        return Problem("invalid_judgement", f"understøttet {shorten(verdict, 40)!r}")
    if verdict == "nej":
        return Problem("unsupported", str(reply.get("begrundelse", "")).strip() or "judged no")
    return None


def _rejected(
    problem: Problem, passage: Example, call: str, task: Example | None = None, raw: str = ""
) -> Outcome:
    rejection = Rejection(problem.reason, passage.id, f"{call}: {problem.detail}", task, raw)
    return Outcome(rejections=(rejection,))
