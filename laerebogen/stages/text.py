"""Prompt files, conversations as prompt text, and tolerant reading of the model's JSON replies,
shared by the stages."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from string import Template

from laerebogen.inference.requests import Constraint
from laerebogen.records import Message

SPEAKERS = {"system": "System", "user": "Bruger", "assistant": "Assistent"}
_FENCE = re.compile(r"^```[a-zA-Z]*\n(.*?)\n```\s*$", re.S)
# One character of a JSON string: anything but a quote, a backslash or a control character,
# or an escape sequence.
_JSON_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'


@functools.cache
def load_prompt(name: str) -> Template:
    """The prompt ``laerebogen/prompts/<name>.txt``; fields are written ``$field``.

    ``string.Template`` rather than ``str.format``, so prompts can show JSON braces as is.
    """
    path = resources.files("laerebogen") / "prompts" / f"{name}.txt"
    return Template(path.read_text(encoding="utf-8"))


def render(name: str, **fields: str) -> str:
    """Prompt ``name`` with its fields filled in; a missing field is a KeyError."""
    return load_prompt(name).substitute(fields)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters at a space, marked with […]."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip() + " […]"


def speaker_transcript(messages: Sequence[Message], limits: Sequence[int]) -> str:
    """A conversation as plain text inside a prompt (``Bruger: ...``), each message cut to its
    limit: a judge or a simulated user reads it without the chat template's turns."""
    return "\n\n".join(
        f"{SPEAKERS[message.role]}: {shorten(message.content.strip(), limit)}"
        for message, limit in zip(messages, limits, strict=True)
    )


def parse_json_object(
    text: str, fields: Mapping[str, type | tuple[type, ...]]
) -> tuple[dict[str, object] | None, str]:
    """The JSON object in a reply, checked for ``fields`` and their types.

    Returns ``(object, "")`` or ``(None, reason)`` with reason ``invalid_json``,
    ``not_an_object``, ``missing_field`` or ``wrong_type``. A code fence around the object is
    accepted, and raw control characters inside strings too (``strict=False``): weak models
    write both, and neither changes what the reply says. A string with an escaped lone
    surrogate is ``invalid_json``: it cannot be written to a record file.
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = json.loads(stripped, strict=False)
        # An escaped lone surrogate (\\udebf) loads, but no UTF-8 file can hold it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None, "invalid_json"
    if not isinstance(value, dict):
        return None, "not_an_object"
    for field, kind in fields.items():
        if field not in value:
            return None, "missing_field"
        if not isinstance(value[field], kind):
            return None, "wrong_type"
    return value, ""


def bounded_text(max_tokens: int) -> Constraint:
    """Free text that surely ends before ``max_tokens``, for the constrained mode.

    A model that never writes its end token (the random test model) would otherwise cut
    every free-text answer at ``max_tokens``, and cut answers are rejected. A token covers at
    least one byte and a Danish letter at most two, so ``max_tokens // 2`` characters fit.
    """
    return Constraint(regex=rf"\S[\s\S]{{0,{max(0, max_tokens // 2 - 1)}}}")


# JSON replies are constrained by a regular expression of the whole object rather than a
# JSON schema: xgrammar (0.2.x) lowers a length-bounded JSON string to a character class
# without escapes, so it could not hold a line break, a quotation mark or a backslash
# (mlc-ai/xgrammar#800), and code, tables and paragraphs would be lost.
#
# Strings are unbounded unless a limit is given. A counted repetition of alternatives (a
# character or an escape) makes xgrammar's token mask cost 0.1 s per decoded token and request
# at 100 characters and 1-2 s at 1,000 (Gemma's 262k vocabulary), against microseconds for
# `*`: bounds are for a model that never closes its strings (the random test model), while a
# real model's reply is bounded by max_tokens (benchmarks/constrained_decoding.py).


def json_string(limit: int | None, minimum: int = 0) -> str:
    """A regex of a JSON string literal of at least ``minimum`` characters and at most
    ``limit`` (an escape counts as one); None: no upper bound."""
    if limit is None:
        return f'"{_JSON_CHAR * minimum}{_JSON_CHAR}*"'
    return f'"{_JSON_CHAR}{{{minimum},{limit}}}"' if limit > 0 else '""'


def json_object(members: Sequence[tuple[str, str]]) -> str:
    """A regex of a JSON object without whitespace: ``(key, value regex)`` pairs in order."""
    return r"\{" + ",".join(f'"{key}":{value}' for key, value in members) + r"\}"
