"""Magpie: tasks the instruct model writes itself, from its bare chat template.

Shown its template up to where the user's message begins, an instruction-tuned model writes
the kind of message its users send, without a seed or an example to copy. A short Danish
steering text makes the message Danish: a system message (``steering = "system"``) or the
first words of the message (``user_start``, one opening drawn per slot, kept in the message);
``none`` shows the bare template. The model then answers its own message in a normal chat.
One prompt slot makes at most one record; the merge filters and deduplicates it like every
base task.
"""

from __future__ import annotations

import functools
import random
import re

from laerebogen.config.schema import Magpie
from laerebogen.inference.requests import ChatRequest, Constraint, Result, UserTurnRequest
from laerebogen.records import Example, Message, Provenance, Rejection, record_id
from laerebogen.stages.answers import too_few_words, unfinished
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.followups import Problem, answer_problem, speaker_problem
from laerebogen.stages.text import bounded_text, load_prompt, render

# A transcript's next speaker ends the user's message (the model's own template ends it with
# its end-of-turn token).
USER_STOPS = ("\nAssistent:", "\nBruger:")
# Fewer words than this (a word: two letters or more) is no task.
MIN_MESSAGE_WORDS = 3
# Pieces of chat templates: in a message, the model wrote the template instead of a user.
_TEMPLATE = re.compile(r"<\|?(?:im_start|im_end|start_of_turn|end_of_turn|eot_id)\|?>|<bos>")


@functools.cache
def openings() -> tuple[str, ...]:
    """The first words a steered user message starts with, from their prompt file."""
    return tuple(line.strip() for line in load_prompt("magpie_openings").template.splitlines()
                 if line.strip())  # fmt: skip


def read_message(result: Result, start: str) -> tuple[str, Problem | None]:
    """The user's message (``start`` and what the model wrote), or why it is none."""
    if found := unfinished(result):
        return "", Problem(*found)
    message = (start + result.text).strip()
    if short := too_few_words(message, MIN_MESSAGE_WORDS):
        return "", Problem("empty_message", short)
    if leak := _TEMPLATE.search(message):
        return "", Problem("template_leak", f"holds the chat template's {leak.group()!r}")
    if problem := speaker_problem(message):
        return "", problem
    return message, None


class MagpieStage(Stage):
    """A user message from the bare chat template, then the answer to it, per prompt slot.

    Rejections: ``empty_message``, ``template_leak``, ``speaker_label``, ``truncated``,
    ``prompt_too_long`` for the message; ``empty_answer``, ``refusal``, ``truncated`` (and the
    other reasons of :func:`~laerebogen.stages.followups.answer_problem`) for the answer.
    """

    name = "magpie"

    def __init__(self, settings: Magpie) -> None:
        self.settings = settings
        self.system = render("magpie_system").strip() if settings.steering == "system" else ""

    def process(self, record: Example, context: Context) -> Work:
        seed = context.seed(self.name, record.id, "user")
        start = ""
        if self.settings.steering == "user_start":
            # No space after it: the model's next token brings its own (a prompt that ends in a
            # space leaves a model only the rarer tokens that start without one).
            start = random.Random(seed).choice(openings())
        result = yield UserTurnRequest(
            id=f"{record.id}/user",
            system=self.system,
            start=start,
            sampling=self.settings.sampling,
            seed=seed,
            stop=USER_STOPS,
            constraint=self._bound(self.settings.sampling.max_tokens),
        )
        message, problem = read_message(result, start)
        if problem:
            rejection = Rejection(problem.reason, record.id, f"message: {problem.detail}",
                                  raw=result.text)  # fmt: skip
            return Outcome(rejections=(rejection,))
        answer_seed = context.seed(self.name, record.id, "answer")
        result = yield ChatRequest(
            id=f"{record.id}/answer",
            messages=(Message("user", message),),
            sampling=self.settings.answer_sampling,
            seed=answer_seed,
            constraint=self._bound(self.settings.answer_sampling.max_tokens),
        )
        task = Example(
            id=record_id(self.name, context.round, record.id),
            instruction=message,
            output=result.text.strip(),
            provenance=Provenance(
                origin="magpie",
                source="magpie",
                steps=(context.step(self.name, answer_seed, f"steering {self.settings.steering}"),),
            ),
        )
        if problem := answer_problem(result):
            detail = f"answer: {problem.detail}"
            return Outcome(rejections=(Rejection(problem.reason, record.id, detail, task),))
        return Outcome(records=(task,))

    def _bound(self, max_tokens: int) -> Constraint | None:
        """A length bound for a model that never stops (``bounded``), else none."""
        return bounded_text(max_tokens) if self.settings.bounded else None
