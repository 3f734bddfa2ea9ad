"""Records from files outside a run, for the stand-alone ``dedup`` and ``filter`` commands.

Users point these commands at whatever they have: a JSONL of examples
(``instruction``/``input``/``output``), a seed file (``instances``) or a shard of a run. Every
item keeps its original JSON line, so what is written back is exactly what was read, minus what
was removed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Filters
from laerebogen.errors import LaerebogenError
from laerebogen.filtering.dedup import rouge_l_dedup
from laerebogen.filtering.screening import Screener
from laerebogen.records import Example
from laerebogen.store.atomic import atomic_lines
from laerebogen.store.shards import read_record_file

FIELDS = ("instruction", "input", "output")


class Item(NamedTuple):
    """One record: where it was read, its JSON line and its (instruction, input, output)s."""

    location: str
    line: bytes
    examples: tuple[tuple[str, str, str], ...]

    def field(self, name: str) -> str:
        """The text of one field; a seed task's instances are joined by blank lines."""
        index = FIELDS.index(name)
        return "\n\n".join(example[index] for example in self.examples)


def _text(record: dict, key: str, location: str) -> str:
    value = record.get(key, "")
    if not isinstance(value, str):
        raise LaerebogenError(f"{location}: '{key}' must be a string, got {type(value).__name__}")
    return value


def _examples(record: object, location: str) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(record, dict):
        raise LaerebogenError(f"{location}: expected a JSON object")
    if "instruction" not in record:
        raise LaerebogenError(f"{location}: no 'instruction' field")
    instruction = _text(record, "instruction", location)
    instances = record.get("instances")
    if instances is None:
        return ((instruction, _text(record, "input", location), _text(record, "output", location)),)
    if not isinstance(instances, list) or not instances:
        raise LaerebogenError(f"{location}: 'instances' must be a non-empty list")
    if not all(isinstance(instance, dict) for instance in instances):
        raise LaerebogenError(f"{location}: every instance must be a JSON object")
    return tuple(
        (instruction, _text(instance, "input", location), _text(instance, "output", location))
        for instance in instances
    )


def read_items(path: str | Path) -> Iterator[Item]:
    """Items of a JSONL file or of a shard (``*.msgpack.zst``), with one-line errors."""
    path = Path(path)
    if path.name.endswith(".msgpack.zst"):
        for number, record in enumerate(read_record_file(path), start=1):
            if not isinstance(record, Example):
                raise LaerebogenError(f"{path}: a rejects file holds no examples")
            example = (record.instruction, record.input, record.output)
            yield Item(f"{path}#{number}", msgspec.json.encode(record), (example,))
        return
    for location, line, record in json_lines(path):
        yield Item(location, line, _examples(record, location))


def json_lines(path: Path) -> Iterator[tuple[str, bytes, object]]:
    """(``file:line``, the line, its parsed JSON) of each non-empty line; a line that is not
    JSON, or a missing file, is a one-line error."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; a generator owns it)
    except FileNotFoundError:
        raise LaerebogenError(f"{path}: no such file") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            location = f"{path}:{number}"
            try:
                record = json.loads(stripped)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise LaerebogenError(f"{location}: not JSON ({error})") from None
            yield location, stripped, record


def dedup_items(
    source: str, target: str, field: str, threshold: float, existing: str | None = None
) -> str:
    """Write to ``target`` the items of ``source`` whose ``field`` has ROUGE-L at most
    ``threshold`` with every earlier kept item (and every item of ``existing``); says what it did.
    """
    if field not in FIELDS:
        raise LaerebogenError(f"--field must be one of {', '.join(FIELDS)}, got {field!r}")
    items = list(read_items(source))
    pool = [item.field(field) for item in read_items(existing)] if existing else []
    kept = rouge_l_dedup([item.field(field) for item in items], threshold, pool)
    atomic_lines(Path(target), (items[index].line for index in kept))
    against = f" and the {len(pool)} records of {existing}" if existing else ""
    return (
        f"{source}: read {len(items)}, kept {len(kept)}, removed {len(items) - len(kept)} "
        f"(ROUGE-L of {field} above {threshold} with an earlier kept record{against}) "
        f"-> {target}"
    )


def filter_items(
    source: str, target: str, rejects: str | None = None, filters: Filters | None = None
) -> str:
    """Write to ``target`` the items of ``source`` whose every example passes the merge's
    screening (and the others, with reason, to ``rejects``); returns the funnel as text."""
    items = list(read_items(source))
    examples = [example for item in items for example in item.examples]
    screenings = iter(Screener(filters).screen(examples))
    kept: list[bytes] = []
    rejected: list[bytes] = []
    funnel: Counter[str] = Counter()
    for item in items:
        outcomes = [next(screenings) for _ in item.examples]
        failure = next((o.rejection for o in outcomes if o.rejection is not None), None)
        if failure is None:
            kept.append(item.line)
            continue
        funnel[failure.reason] += 1
        rejected.append(
            b'{"location":%s,"reason":%s,"detail":%s,"record":%s}'
            % (
                msgspec.json.encode(item.location),
                msgspec.json.encode(failure.reason),
                msgspec.json.encode(failure.detail),
                item.line,
            )
        )
    atomic_lines(Path(target), kept)
    if rejects:
        atomic_lines(Path(rejects), rejected)
    lines = [f"{source}: read {len(items)}, kept {len(kept)}, rejected {len(rejected)}"]
    lines += [f"  {reason:<24} {count:>7}" for reason, count in funnel.most_common()]
    lines.append(f"-> {target}" + (f" (rejects: {rejects})" if rejects else ""))
    return "\n".join(lines)
