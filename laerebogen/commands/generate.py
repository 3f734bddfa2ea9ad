"""``laerebogen generate``: a JSONL file of engine requests through a config's model, for
looking at what a model answers without a run."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import msgspec

from laerebogen.config.schema import Config
from laerebogen.errors import LaerebogenError
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import Request, Result
from laerebogen.store.atomic import atomic_lines


def read_requests(path: Path) -> list[Request]:
    """The requests of a JSONL file; a line that is not a request is one error naming it."""
    if not path.is_file():
        raise LaerebogenError(f"{path}: no such requests file")
    decoder = msgspec.json.Decoder(Request)
    batch: list[Request] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    batch.append(decoder.decode(line))
                except msgspec.DecodeError as error:
                    raise LaerebogenError(f"{path}:{number}: {error}") from None
    return batch


def generate_file(requests: Path, results: Path, config: Config, model: str) -> str:
    """Answer every request of ``requests`` with ``[models.<model>]`` into ``results`` (JSONL,
    in order), with progress on stderr; says how long it took and how the answers finished."""
    batch = read_requests(requests)
    engine = Engine.from_config(config, model)
    answers: list[Result] = []
    start = time.perf_counter()
    with engine:
        loaded = time.perf_counter()
        for _chunk, chunk_results in engine.run(batch):
            answers.extend(chunk_results)
            print(f"  {len(answers)}/{len(batch)} requests", file=sys.stderr)
    seconds = time.perf_counter() - loaded
    atomic_lines(results, (msgspec.json.encode(answer) for answer in answers))
    reasons = Counter(answer.finish_reason for answer in answers)
    tokens = sum(answer.completion_tokens for answer in answers)
    return (
        f"{requests}: {len(answers)} requests to {engine.name} "
        f"(loaded in {loaded - start:.1f} s), {tokens} tokens in {seconds:.1f} s "
        f"({tokens / max(seconds, 1e-9):.0f}/s); finish: "
        + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
        + f" -> {results}"
    )
