"""The dataset file: one ``{"messages": [...]}`` conversation per line, in the run's order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from laerebogen.config import Config
from laerebogen.plan import final_records
from laerebogen.records import Message
from laerebogen.store import RunStore

DATASET_FILE = "dataset.jsonl"


class Conversation(msgspec.Struct, frozen=True):
    """One line of the dataset."""

    messages: tuple[Message, ...]


def export_dataset(store: RunStore, config: Config) -> tuple[Path, int]:
    """Write the final records as JSONL in the run directory; returns the path and count.

    Deterministic: the same run always gives the same bytes.
    """
    encoder = msgspec.json.Encoder()
    count = 0

    def lines() -> Iterator[bytes]:
        nonlocal count
        for record in final_records(store, config):
            count += 1
            yield encoder.encode(Conversation(record.conversation()))

    path = store.write_lines(DATASET_FILE, lines())
    return path, count
