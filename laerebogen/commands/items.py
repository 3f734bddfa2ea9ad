"""Records from files outside a run, for the stand-alone ``dedup`` and ``filter`` commands.

Users point these commands at whatever they have: a JSONL of examples
(``instruction``/``input``/``output``), a seed file (``instances``) or a shard of a run. Every
item keeps its original JSON line, so what is written back is exactly what was read, minus what
was removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec

from laerebogen.errors import LaerebogenError
from laerebogen.records import Example
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
            yield Item(location, stripped, _examples(record, location))
