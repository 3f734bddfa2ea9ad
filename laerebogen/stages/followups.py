"""Follow-up turns: single exchanges become multi-turn Danish conversations.

Each turn takes two calls. First the model plays the user: it reads the conversation so far
as a transcript inside one instruction and writes the user's next message, of a kind drawn
per turn (a clarification, an example, a new angle, ...) so the dataset gets a mix. Then it
answers that message as the assistant on the real conversation, rendered by the chat
template, as a user of the dataset would see it. A failed turn is tried once more with new
seeds; a second failure ends the conversation with the turns it has, so a record is never
lost, and the rejections say why conversations stopped early.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Generator, Sequence
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Followups
from laerebogen.inference.requests import ChatRequest, Constraint, Request, Result
from laerebogen.records import Example, Message, Rejection
from laerebogen.stages.answers import refusal_phrase, too_few_words, unfinished
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.text import (
    bounded_text,
    json_object,
    json_string,
    load_prompt,
    parse_json_object,
    render,
    shorten,
    speaker_transcript,
)

# A chat message longer than this is not a natural follow-up.
MAX_FOLLOWUP_CHARS = 400
# The transcript in the user-message prompt: the last exchange matters most for what to ask
# next, earlier turns only give the topic, so they are cut shorter.
EARLIER_MESSAGE_CHARS = 800
LATEST_MESSAGE_CHARS = 2400
# A follow-up this close to an earlier user message (ROUGE-L) asks the same thing again.
REPEAT_SIMILARITY = 0.8
RETRIES = 1
# Fewer words than this (a word: two letters or more) is no message: "...", "?", an emoji.
MIN_FOLLOWUP_WORDS = 2

_QUOTES = "\"'“”„«»‘’`"
_USER_LABEL = re.compile(
    r"^(?:\*\*)?(?:bruger(?:en)?|brugerens besked|user|besked)(?:\*\*)?\s*:(?:\*\*)?\s*", re.I
)
# The model may go on and write the assistant's reply too: that is not part of the message.
_ASSISTANT_LABEL = re.compile(r"\n\s*(?:\*\*)?(?:assistent(?:en)?|assistant)(?:\*\*)?\s*:", re.I)
# A transcript's speaker label inside a message: the model wrote another speaker's turn.
_SPEAKER_LABEL = re.compile(r"(?:^|\s)(?:Bruger|Assistent):")


class Problem(NamedTuple):
    """Why a call of a turn failed: a rejection reason code and a one-line detail."""

    reason: str
    detail: str


@functools.cache
def followup_kinds() -> tuple[tuple[str, str], ...]:
    """The kinds of user message, ``(name, what the message does)``, from their prompt file."""
    lines = load_prompt("followups_kinds").template.splitlines()
    pairs = (line.split(":", 1) for line in lines if line.strip())
    return tuple((name.strip(), description.strip()) for name, description in pairs)


def choose_kind(seed: int) -> tuple[str, str]:
    """The kind of one turn's user message, drawn uniformly with the turn's own seed."""
    return random.Random(seed).choice(followup_kinds())


def transcript(messages: Sequence[Message]) -> str:
    """The conversation as plain text for the prompt, the last exchange cut longer."""
    latest = len(messages) - 2
    limits = [
        LATEST_MESSAGE_CHARS if index >= latest else EARLIER_MESSAGE_CHARS
        for index in range(len(messages))
    ]
    return speaker_transcript(messages, limits)


def followup_pattern(max_chars: int | None) -> str:
    """The regex of the user message's JSON; ``max_chars`` (for a model that never stops)
    keeps it within ``max_tokens``."""
    return json_object([("besked", json_string(max_chars, 1))])


def clean_followup(text: str) -> str:
    """The message alone: without a speaker label, enclosing quotes or a reply appended."""
    text = _ASSISTANT_LABEL.split(text, maxsplit=1)[0].strip()
    text = _USER_LABEL.sub("", text, count=1).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _unfinished(result: Result, cut: str) -> Problem | None:
    """The problem of a result that did not end by itself, with reason ``cut`` if it was cut."""
    found = unfinished(result)
    if found is None:
        return None
    reason, detail = found
    return Problem(reason if reason == "prompt_too_long" else cut, detail)


def read_followup(
    result: Result, constrained: bool, earlier: Sequence[str]
) -> tuple[str, Problem | None]:
    """The user message in a result, or ``("", problem)`` when it cannot be one."""
    if problem := _unfinished(result, "invalid_followup"):
        return "", problem
    text = result.text
    if constrained:
        reply, reason = parse_json_object(text, {"besked": str})
        if reply is None:
            return "", Problem("invalid_followup", f"not the JSON asked for: {reason}")
        text = str(reply["besked"])
    message = clean_followup(text)
    if short := too_few_words(message, MIN_FOLLOWUP_WORDS):
        return "", Problem("empty_followup", short)
    if problem := speaker_problem(message):
        return "", problem
    if len(message) > MAX_FOLLOWUP_CHARS:
        detail = f"{len(message)} characters, more than {MAX_FOLLOWUP_CHARS}"
        return "", Problem("invalid_followup", detail)
    if (copied := _repeated(message, earlier)) is not None:
        return "", Problem("repeated_followup", f"repeats {shorten(copied, 60)!r}")
    return message, None


def _repeated(message: str, earlier: Sequence[str]) -> str | None:
    """The earlier user message that ``message`` asks again, if any."""
    from laerebogen.filtering.dedup import (
        rouge_l,  # numba stays out of the engine process's imports
    )

    normal = " ".join(message.lower().split())
    for text in earlier:
        if " ".join(text.lower().split()) == normal or rouge_l(message, text) >= REPEAT_SIMILARITY:
            return text
    return None


def speaker_problem(text: str) -> Problem | None:
    """A transcript's speaker label (``Bruger:``) inside ``text``: another speaker's turn."""
    if found := _SPEAKER_LABEL.search(text):
        return Problem("speaker_label", f"holds {found.group().strip()!r}: another speaker's turn")
    return None


def answer_problem(result: Result) -> Problem | None:
    """Why an assistant answer cannot end a turn: cut off, empty, holding another speaker's
    turn or a refusal; else None."""
    if problem := _unfinished(result, "truncated"):
        return problem
    text = result.text.strip()
    if not text:
        return Problem("empty_answer", "empty answer")
    if problem := speaker_problem(text):
        return problem
    if phrase := refusal_phrase(text):
        return Problem("refusal", f"short answer with {phrase!r}")
    return None


class Try(NamedTuple):
    """One try at one turn of a record's conversation: names its calls and seeds them."""

    record: Example
    context: Context
    turn: int
    retry: int

    def call(self, call: str) -> tuple[str, int]:
        """The request id and the sampling seed of ``call`` (``user`` or ``answer``)."""
        name = f"{call}-{self.turn}"
        seed = self.context.seed(FollowupStage.name, self.record.id, name, self.retry)
        return f"{self.record.id}/{name}/{self.retry}", seed

    def reject(
        self, call: str, problem: Problem, *, record: Example | None = None, raw: str = ""
    ) -> Rejection:
        """The rejection of this try, with the candidate ``record`` or the ``raw`` reply."""
        detail = f"turn {self.turn + 1}, try {self.retry + 1}, {call}: {problem.detail}"
        return Rejection(problem.reason, self.record.id, detail, record=record, raw=raw)


class FollowupStage(Stage):
    """Adds ``settings.turns`` user/assistant turns to every conversation.

    Every input gives exactly one record with the same id: ``messages`` holds the whole
    conversation, and the provenance step's note says ``turns=k/n`` and its seed is that of
    the last answer added. Rejections feed the funnel: one per failed try
    (``invalid_followup``, ``empty_followup``, ``repeated_followup``, ``speaker_label``,
    ``prompt_too_long``, ``truncated``, ``empty_answer``, ``refusal``) and one
    ``stopped_early`` per conversation that ended because a turn failed twice.
    """

    name = "followups"

    def __init__(self, settings: Followups) -> None:
        self.settings = settings
        # Bounded: half a character per token of the budget, so that even noise, a token per
        # character and a few for the JSON around it, closes the object before ``max_tokens``.
        bound = max(1, min(MAX_FOLLOWUP_CHARS, settings.sampling.max_tokens // 2))
        self.max_chars = bound if settings.bounded else None

    def process(self, record: Example, context: Context) -> Work:
        conversation = record.conversation()
        rejections: list[Rejection] = []
        seed: int | None = None
        added = 0
        for turn in range(self.settings.turns):
            kind = choose_kind(context.seed(self.name, record.id, f"kind-{turn}"))
            for retry in range(RETRIES + 1):
                done = yield from self._turn(Try(record, context, turn, retry), conversation, kind)
                if isinstance(done, Rejection):
                    rejections.append(done)
                    continue
                exchange, seed = done
                conversation = (*conversation, *exchange)
                added += 1
                break
            else:
                detail = f"turns={added}/{self.settings.turns}: turn {turn + 1} failed twice"
                rejections.append(Rejection("stopped_early", record.id, detail))
                break
        note = f"turns={added}/{self.settings.turns}"
        longer = msgspec.structs.replace(record, messages=conversation)
        return Outcome(
            records=(longer.with_step(context.step(self.name, seed, note)),),
            rejections=tuple(rejections),
        )

    def _turn(
        self, attempt: Try, conversation: tuple[Message, ...], kind: tuple[str, str]
    ) -> Generator[Request, Result, tuple[tuple[Message, Message], int] | Rejection]:
        """One try at a turn: the new exchange and its answer's seed, or why it failed."""
        result = yield self._followup_request(attempt, conversation, kind)
        # The instruction alone too: a copy of it, without the input, is no new question.
        earlier = [attempt.record.instruction]
        earlier += [message.content for message in conversation if message.role == "user"]
        question, problem = read_followup(result, self.settings.constrained, earlier)
        if problem:
            return attempt.reject("user message", problem, raw=result.text)
        request_id, seed = attempt.call("answer")
        result = yield ChatRequest(
            id=request_id,
            messages=(*conversation, Message("user", question)),
            sampling=self.settings.answer_sampling,
            seed=seed,
            constraint=(
                bounded_text(self.settings.answer_sampling.max_tokens)
                if self.settings.bounded
                else None
            ),
        )
        exchange = (Message("user", question), Message("assistant", result.text.strip()))
        if problem := answer_problem(result):
            candidate = msgspec.structs.replace(attempt.record, messages=(*conversation, *exchange))
            return attempt.reject("answer", problem, record=candidate)
        return exchange, seed

    def _followup_request(
        self, attempt: Try, conversation: Sequence[Message], kind: tuple[str, str]
    ) -> ChatRequest:
        """The request for the user's next message: the transcript in one Danish instruction."""
        constrained = self.settings.constrained
        name, description = kind
        prompt = render(
            "followups_user",
            conversation=transcript(conversation),
            kind=name,
            description=description,
            format=render("followups_format_json" if constrained else "followups_format_text"),
        )
        request_id, seed = attempt.call("user")
        return ChatRequest(
            id=request_id,
            messages=(Message("user", prompt.strip()),),
            sampling=self.settings.sampling,
            seed=seed,
            constraint=Constraint(regex=followup_pattern(self.max_chars)) if constrained else None,
        )
