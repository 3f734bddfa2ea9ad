"""What the grammar and quality stages share: an example's own text as a JSON triple.

Both stages run before follow-ups, on an example's first exchange. They show the model the
example as a JSON object with the keys ``instruktion``, ``input`` and ``output`` and read the
same kind of object back. Only the example's text goes into the prompt: ids, scores and
provenance would be noise to the model and could leak into what it writes.

Constrained decoding uses a regular expression of the whole object
(:func:`~laerebogen.stages.text.json_object`), so the text keeps its layout (line breaks,
quotes) and the bounds keep the reply within ``max_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Sampling
from laerebogen.inference.requests import ChatRequest, Constraint, Result
from laerebogen.records import Example, Message, Rejection, Step
from laerebogen.stages.answers import unfinished
from laerebogen.stages.core import Context, Outcome
from laerebogen.stages.text import json_string, parse_json_object, render

KEYS = ("instruktion", "input", "output")
TRIPLE_FIELDS: dict[str, type] = dict.fromkeys(KEYS, str)
DETAIL_CHARS = 200


class Triple(NamedTuple):
    """The first exchange of an example: instruction, input (may be empty) and output."""

    instruction: str
    input: str
    output: str

    @classmethod
    def of(cls, record: Example) -> Triple:
        """The triple of ``record``."""
        return cls(record.instruction, record.input, record.output)

    def render(self) -> str:
        """The triple as the JSON object the model reads and answers in, Danish letters as is."""
        return json.dumps(dict(zip(KEYS, self, strict=True)), ensure_ascii=False, indent=2)

    def apply(self, record: Example) -> Example:
        """``record`` with this text as its first exchange; id, scores and provenance kept."""
        return msgspec.structs.replace(
            record, instruction=self.instruction, input=self.input, output=self.output
        )


def triple_request(
    stage: str,
    record: Example,
    context: Context,
    *,
    call: str,
    sampling: Sampling,
    constraint: Constraint | None,
) -> ChatRequest:
    """The one call of ``stage`` on ``record``: its prompt (named like the stage) with the
    record's triple, as a single user message."""
    prompt = render(stage, eksempel=Triple.of(record).render()).strip()
    return ChatRequest(
        id=f"{record.id}/{call}",
        messages=(Message("user", prompt),),
        sampling=sampling,
        seed=context.seed(stage, record.id, call),
        constraint=constraint,
    )


def kept(record: Example, step: Step, why: Rejection) -> Outcome:
    """The record as it was, with its ``step``, and why the stage's answer was not applied."""
    return Outcome(records=(record.with_step(step),), rejections=(why,))


def triple_from(reply: Mapping[str, object]) -> Triple | None:
    """The triple in a parsed reply, each field stripped; None if a field is missing or not text."""
    values = [reply.get(key) for key in KEYS]
    if not all(isinstance(value, str) for value in values):
        return None
    return Triple(*(str(value).strip() for value in values))


def triple_members(limits: Mapping[str, int] | None) -> list[tuple[str, str]]:
    """The members of a triple whose strings are bounded by ``limits`` (keyed by JSON key);
    None: unbounded (see :func:`~laerebogen.stages.text.json_string`)."""
    return [(key, json_string(limits[key] if limits else None)) for key in KEYS]


def one_line(text: object) -> str:
    """Model text as a short single line for a rejection detail or a provenance note."""
    line = " ".join(text.split()) if isinstance(text, str) else ""
    return line if len(line) <= DETAIL_CHARS else line[: DETAIL_CHARS - 1] + "…"


def read_reply(
    result: Result,
    source_id: str,
    fields: Mapping[str, type],
    limits: Mapping[str, int] | None = None,
) -> dict[str, object] | Rejection:
    """The JSON object of a reply, or a rejection saying why there is none.

    The reasons are ``prompt_too_long``, ``truncated`` (cut at ``max_tokens``), ``aborted``,
    the codes of :func:`~laerebogen.stages.text.parse_json_object`, and ``too_long`` when a
    string of ``limits`` fills its bound: constrained decoding closed it there, so the text
    was cut or ran on. Never raises, whatever the text.
    """
    if problem := unfinished(result):
        reason, detail = problem
        return Rejection(reason, source_id, detail, raw=result.text)
    reply, reason = parse_json_object(result.text, fields)
    if reply is None:
        return Rejection(reason, source_id, f"unreadable reply: {reason}", raw=result.text)
    for key, limit in (limits or {}).items():
        value = reply.get(key)
        if limit > 0 and isinstance(value, str) and len(value) >= limit:
            detail = f"{key} fills its {limit}-character bound"
            return Rejection("too_long", source_id, detail, raw=result.text)
    return reply
