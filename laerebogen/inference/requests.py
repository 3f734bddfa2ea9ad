"""What stages send to the engine and get back, without importing vLLM.

Stages build :class:`CompletionRequest` (a raw prompt, for base models),
:class:`ChatRequest` (messages the engine renders with the model's chat template) and
:class:`UserTurnRequest` (the template up to the user's message, for Magpie) and read
:class:`Result`. Sampling is always explicit, ``max_tokens`` included, because vLLM's
default of 16 tokens silently truncates every answer. The sampling seed of a request comes
from :func:`sampling_seed`, so shards never repeat each other and a rerun reproduces them.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from laerebogen.config.schema import Sampling
from laerebogen.records import Message

FinishReason = Literal["stop", "length", "abort", "rejected"]
SEED_BITS = 63


class Constraint(msgspec.Struct, frozen=True, omit_defaults=True):
    """Constrained decoding: the output matches a JSON schema or a regular expression."""

    json_schema: dict[str, object] | None = None
    regex: str | None = None

    def __post_init__(self) -> None:
        if (self.json_schema is None) == (self.regex is None):
            raise ValueError("a Constraint needs exactly one of json_schema and regex")


class _Request(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="kind"):
    """What every request has: an id to match its result, sampling, a seed and stops."""

    id: str
    sampling: Sampling
    seed: int
    stop: tuple[str, ...] = ()
    constraint: Constraint | None = None


class CompletionRequest(_Request, tag="completion"):
    """A raw prompt continued by the model; shared few-shot text goes first for the cache."""

    prompt: str


class ChatRequest(_Request, tag="chat"):
    """A conversation rendered with the model's chat template, answered by the assistant."""

    messages: tuple[Message, ...]


class UserTurnRequest(_Request, tag="user_turn"):
    """The user's message written by the model (Magpie): the chat template up to where the
    user's message begins, after an optional ``system`` message, then ``start``, which the
    model continues. The message ends with the user's turn (the model's end-of-turn token)."""

    system: str = ""
    start: str = ""


Request = CompletionRequest | ChatRequest | UserTurnRequest


def request_kind(request: Request) -> str:
    """The kind of a request as its JSON names it: ``completion``, ``chat`` or ``user_turn``."""
    return str(type(request).__struct_config__.tag)


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to one request.

    ``finish_reason`` is ``stop`` (end of text or a stop sequence), ``length`` (cut at
    ``max_tokens``), ``abort``, or ``rejected`` when the request was never run; ``detail``
    then says why (e.g. the prompt does not fit the context window).
    """

    request_id: str
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    stop_reason: str = ""
    detail: str = ""


def sampling_seed(run_seed: int, stage: str, round: int, record_id: str) -> int:
    """The sampling seed of one request: distinct per request, identical in every rerun.

    A hash rather than a counter, so the seed does not depend on how records were split
    into shards, on the order in which shards ran, or on how often a shard was retried: a
    run gives the same samples whatever failed on the way.
    """
    key = f"{run_seed}\x1f{stage}\x1f{round}\x1f{record_id}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)
