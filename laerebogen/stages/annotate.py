"""Annotation: the instruct model judges each whole conversation for the dataset's users.

One chat request per conversation asks for one JSON object with Danish keys: the domain and
the task type (labels of the :mod:`~laerebogen.stages.taxonomy`), difficulty and quality from 1
to 5 with a one-sentence reason, and whether the conversation is harmful (``nej`` or a hazard
category). The prompt's fixed head (instructions and every label) comes first and the
transcript last, so vLLM's prefix cache computes the head once per shard; messages are cut to
``message_chars`` because the judgement needs the gist, not every line, and prefill is the
step's cost. In constrained mode the reply's regular expression allows only the labels; a reply
that cannot be read is asked again once with a new seed, and a conversation whose second reply
fails too is kept unannotated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Annotate
from laerebogen.errors import ConfigError
from laerebogen.inference.requests import ChatRequest, Constraint, Request, Result
from laerebogen.records import Annotation, Example, Message, Rejection
from laerebogen.stages.answers import unfinished
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.taxonomy import LEVELS, Taxonomy
from laerebogen.stages.text import (
    json_object,
    json_string,
    parse_json_object,
    render,
    speaker_transcript,
)
from laerebogen.stages.triples import one_line

RETRIES = 1
FIELDS: dict[str, type | tuple[type, ...]] = {
    "domæne": str,
    "opgavetype": str,
    "sværhedsgrad": (int, str),
    "begrundelse": str,
    "kvalitet": (int, str),
    "skadeligt": str,
}
_REGEX_SPECIAL = re.compile(r"([.^$*+?{}\[\]\\|()])")


class Failure(NamedTuple):
    """Why one reply gave no annotation: a rejection reason and a one-line detail."""

    reason: str
    detail: str


def _choice(labels: Sequence[str]) -> str:
    """A regex of a JSON string holding exactly one of ``labels``."""
    return '"(?:' + "|".join(_REGEX_SPECIAL.sub(r"\\\1", label) for label in labels) + ')"'


def annotation_regex(taxonomy: Taxonomy, reason_chars: int | None) -> str:
    """The reply as a regular expression: labels from ``taxonomy``, levels 1-5, the reason
    bounded by ``reason_chars`` (None: free)."""
    level = "[1-5]"
    return json_object(
        [
            ("domæne", _choice(taxonomy.domains)),
            ("opgavetype", _choice(taxonomy.task_types)),
            ("sværhedsgrad", level),
            ("begrundelse", json_string(reason_chars, 1)),
            ("kvalitet", level),
            ("skadeligt", _choice(taxonomy.verdicts)),
        ]
    )


def reason_bound(taxonomy: Taxonomy, max_tokens: int) -> int:
    """The most characters of the reason that surely fit ``max_tokens`` with the rest of the
    reply, for a model that never stops (bounded mode): a token is at least one byte, the
    longest labels and the keys take their bytes, a Danish letter of the reason two."""
    longest = {
        "domæne": max(taxonomy.domains, key=len),
        "opgavetype": max(taxonomy.task_types, key=len),
        "sværhedsgrad": 5,
        "begrundelse": "",
        "kvalitet": 5,
        "skadeligt": max(taxonomy.verdicts, key=len),
    }
    skeleton = len(json.dumps(longest, ensure_ascii=False, separators=(",", ":")).encode())
    room = (max_tokens - skeleton) // 2
    if room < 1:
        raise ConfigError(
            f"[annotate] sampling.max_tokens {max_tokens} leaves no room for the reason of a "
            f"bounded reply: its labels and keys take up to {skeleton} tokens"
        )
    return room


def _label(value: object, labels: Sequence[str]) -> str | None:
    """The label of ``labels`` that ``value`` names (case and spaces aside), else None."""
    folded = " ".join(str(value).split()).casefold()
    return next((label for label in labels if label.casefold() == folded), None)


def _level(value: object) -> int | None:
    """``value`` as a level 1-5: an int (not a bool) or, from an unconstrained reply, its
    digit as a string; else None."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return int(text) if text in LEVELS else None


def read_annotation(result: Result, taxonomy: Taxonomy) -> Annotation | Failure:
    """The annotation in a reply, or why there is none."""
    if found := unfinished(result):
        return Failure(*found)
    reply, problem = parse_json_object(result.text, FIELDS)
    if reply is None:
        return Failure("invalid_annotation", f"not the JSON object asked for: {problem}")
    domain = _label(reply["domæne"], taxonomy.domains)
    task_type = _label(reply["opgavetype"], taxonomy.task_types)
    harm = _label(reply["skadeligt"], taxonomy.verdicts)
    difficulty, quality = _level(reply["sværhedsgrad"]), _level(reply["kvalitet"])
    for key, value in (
        ("domæne", domain),
        ("opgavetype", task_type),
        ("skadeligt", harm),
        ("sværhedsgrad", difficulty),
        ("kvalitet", quality),
    ):
        if value is None:
            return Failure("invalid_annotation", f"{key} {one_line(reply[key])!r} is no choice")
    assert domain and task_type and harm and difficulty and quality
    reason = one_line(reply["begrundelse"])
    return Annotation(domain, task_type, difficulty, quality, reason, harm)


class AnnotateStage(Stage):
    """Annotates every conversation; every input gives exactly one record with the same id.

    The record gets ``annotation`` and a provenance step with the seed of the reply used (note
    ``annotated``). A failed reply is a rejection (``invalid_annotation``, ``truncated``,
    ``prompt_too_long``, ``aborted``) and is asked again once; after a second failure the
    record is kept without annotation (note ``annotation_failed``) and one
    ``annotation_failed`` rejection counts it.
    """

    name = "annotate"

    def __init__(self, settings: Annotate, taxonomy: Taxonomy) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        bound = reason_bound(taxonomy, settings.sampling.max_tokens) if settings.bounded else None
        regex = annotation_regex(taxonomy, bound)
        self.constraint = Constraint(regex=regex) if settings.constrained else None
        self.head = render(
            "annotate",
            domains=_quoted(taxonomy.domains),
            task_types=_quoted(taxonomy.task_types),
            difficulty=_levels(taxonomy.difficulty),
            quality=_levels(taxonomy.quality),
            harms=_quoted(taxonomy.harms),
            conversation="",
        )

    def prompt(self, conversation: Sequence[Message]) -> str:
        """The whole prompt: the fixed head, then the shortened transcript."""
        limits = [self.settings.message_chars] * len(conversation)
        return self.head + speaker_transcript(conversation, limits)

    def process(self, record: Example, context: Context) -> Work:
        prompt = self.prompt(record.conversation())
        rejections: list[Rejection] = []
        seed = None
        for retry in range(RETRIES + 1):
            found, seed, raw = yield from self._ask(record, context, prompt, retry)
            if isinstance(found, Annotation):
                annotated = msgspec.structs.replace(record, annotation=found)
                step = context.step(self.name, seed, "annotated")
                return Outcome(records=(annotated.with_step(step),), rejections=tuple(rejections))
            detail = f"try {retry + 1}: {found.detail}"
            rejections.append(Rejection(found.reason, record.id, detail, raw=raw))
        detail = f"no usable reply in {RETRIES + 1} tries; kept unannotated"
        rejections.append(Rejection("annotation_failed", record.id, detail))
        step = context.step(self.name, seed, "annotation_failed")
        return Outcome(records=(record.with_step(step),), rejections=tuple(rejections))

    def _ask(
        self, record: Example, context: Context, prompt: str, retry: int
    ) -> Generator[Request, Result, tuple[Annotation | Failure, int, str]]:
        """One request for the annotation: what its reply gave, its seed and its text."""
        seed = context.seed(self.name, record.id, "judge", retry)
        result = yield ChatRequest(
            id=f"{record.id}/annotate/{retry}",
            messages=(Message("user", prompt),),
            sampling=self.settings.sampling,
            seed=seed,
            constraint=self.constraint,
        )
        return read_annotation(result, self.taxonomy), seed, result.text


def _quoted(labels: Sequence[str]) -> str:
    """Labels as the prompt lists them: quoted as the reply must write them (a label may hold
    a comma)."""
    return ", ".join(f'"{label}"' for label in labels)


def _levels(levels: dict[str, str]) -> str:
    """The levels 1-5 as the prompt's indented list."""
    return "\n".join(f"  {level}: {levels[level]}" for level in LEVELS)
