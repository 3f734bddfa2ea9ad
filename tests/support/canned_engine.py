"""A stand-in engine that answers without a model, for tests of what lies around the model.

Shard kill and resume, the driver's retries and failure reports and the container command
need answers that parse, not a model: each reply here is drawn from the request's constraint
(the regular expression every stage of the ``tiny`` config sends) with the request's seed, as
the tiny random model's constrained noise is, in microseconds instead of a vLLM start-up of
20-45 s per process on 2 cores. A process uses it when ``LAEREBOGEN_ENGINE_FACTORY`` is
``tests.support.canned_engine:CannedEngine`` (and ``tests`` is importable); the engine tests,
the local end-to-end run and the SLURM recipe keep the real vLLM.
"""

from __future__ import annotations

import functools
import os
import random
import re
import re._constants as sre
import re._parser as sre_parse
import time
from collections.abc import Sequence
from pathlib import Path

from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.config.schema import Model
from laerebogen.inference.engine import Answered, Engine
from laerebogen.inference.requests import CompletionRequest, Request, Result

FACTORY = "tests.support.canned_engine:CannedEngine"
# Seconds each call takes (default 0), for tests that must catch a shard between its chunks.
SECONDS_VARIABLE = "LAEREBOGEN_CANNED_SECONDS"
# What a drawn character is taken from: Danish letters, with spaces often enough for words.
ALPHABET = "abcdefghijklmnopqrstuvwxyzæøå" * 3 + "ABDEFGHKLMNOPRSTVÆØÅ" + " " * 12 + ".,?!-\n01"
# An unbounded repetition draws at most this many more items than its minimum.
UNBOUNDED_EXTRA = 24
# The first alternative of a choice is drawn this many times as often as each other one: in a
# JSON string, a plain character rather than an escape.
FIRST_BRANCH_WEIGHT = 60


class CannedEngine(Engine):
    """An engine whose answers are drawn from each request's constraint; loads nothing."""

    def __init__(self, model: Model, path: Path, settings: EngineSettings) -> None:
        self.model, self.path, self.settings = model, path, settings
        self.show_progress = False
        self._llm = None

    @property
    def name(self) -> str:
        """Records name the stand-in, not the model it stands in for."""
        return f"canned-{self.path.name}"

    def load(self) -> None:  # type: ignore[override]
        """Nothing to load."""

    def close(self) -> None:
        """Nothing to release."""

    def rendering_for(self, model: Model) -> Engine:
        """The same stand-in; how chats are rendered does not matter to it."""
        return CannedEngine(model, self.path, self.settings)

    def generate(
        self, requests: Sequence[Request], answered: Answered | None = None
    ) -> list[Result]:
        """One drawn answer per request, finished with ``stop``."""
        time.sleep(float(os.environ.get(SECONDS_VARIABLE, "0")))
        results = []
        for request in requests:
            text = draw(request.constraint.regex, request.seed) if request.constraint else "Ja."
            prompt = request.prompt if isinstance(request, CompletionRequest) else request.messages
            results.append(Result(request.id, text, "stop", len(str(prompt)) // 4, len(text) // 3))
        if answered is not None:
            tokens = sum(result.completion_tokens for result in results)
            answered(len(results), len(requests), tokens)
        return results


def draw(pattern: str, seed: int) -> str:
    """A string that ``pattern`` matches in full, the same for the same seed."""
    text = "".join(_items(_parsed(pattern), random.Random(seed)))
    assert re.fullmatch(pattern, text), (pattern, text)
    return text


@functools.cache
def _parsed(pattern: str) -> sre_parse.SubPattern:
    """A constraint parsed once: a step sends the same one with every request."""
    return sre_parse.parse(pattern)


def _items(items: sre_parse.SubPattern | list, rng: random.Random) -> list[str]:
    """The characters drawn for a sequence of parsed regex items."""
    out: list[str] = []
    for op, value in items:
        out.extend(_item(op, value, rng))
    return out


def _item(op: object, value: object, rng: random.Random) -> list[str]:
    """The characters drawn for one parsed regex item (an opcode and its argument)."""
    if op is sre.LITERAL:
        return [chr(value)]  # type: ignore[arg-type]
    if op in (sre.NOT_LITERAL, sre.ANY, sre.IN):
        pool = [c for c in dict.fromkeys(ALPHABET) if _matches(op, value, c)]
        return [rng.choice(pool)]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, high, sub = value  # type: ignore[misc]
        high = low + UNBOUNDED_EXTRA if high is sre.MAXREPEAT else min(high, low + 200)
        return [s for _ in range(rng.randint(low, high)) for s in _items(sub, rng)]
    if op is sre.SUBPATTERN:
        return _items(value[-1], rng)  # type: ignore[index]
    if op is sre.BRANCH:
        branches = value[1]  # type: ignore[index]
        weights = [FIRST_BRANCH_WEIGHT] + [1] * (len(branches) - 1)
        return _items(rng.choices(branches, weights)[0], rng)
    if op is sre.AT:
        return []
    raise ValueError(f"the canned engine cannot draw {op} in a constraint")


def _matches(op: object, value: object, char: str) -> bool:
    """Whether one character matches a single-character item of a parsed regex."""
    if op is sre.ANY:
        return char != "\n"
    if op is sre.NOT_LITERAL:
        return ord(char) != value
    negate, hit = False, False
    for kind, member in value:  # type: ignore[attr-defined]
        if kind is sre.NEGATE:
            negate = True
        elif kind is sre.LITERAL:
            hit |= ord(char) == member
        elif kind is sre.RANGE:
            hit |= member[0] <= ord(char) <= member[1]
        elif kind is sre.CATEGORY:
            hit |= _CATEGORIES[member](char)
    return hit != negate


_CATEGORIES = {
    sre.CATEGORY_DIGIT: str.isdigit,
    sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    sre.CATEGORY_SPACE: str.isspace,
    sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
}
