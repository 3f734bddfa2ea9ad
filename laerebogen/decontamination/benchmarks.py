"""Evaluation sets read from local files as items to decontaminate against.

A benchmark is a JSONL file (one object per line), a Parquet file, a CSV file with a header,
or a folder written by ``datasets``' ``save_to_disk`` (one dataset, or a dataset dict whose
splits are read in the order it lists them). Each row is one item: the texts of the fields
asked for (a string, or a list of strings such as multiple-choice options), by default every
string field; its id is the value of the id field when the row has one, else its row number
(``split/row`` in a dataset dict). A benchmark is read whole or not at all: a row that cannot be
read, or a field no row has, is a one-line error naming the file, because a benchmark read in
part would leave leaks undetected without saying so.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from laerebogen.decontamination.ngrams import Item
from laerebogen.errors import SourceError

FORMATS = "JSONL, Parquet, CSV or a `save_to_disk` folder"


class Benchmark(NamedTuple):
    """The items of one benchmark file and the fields they were read from."""

    name: str
    path: Path
    items: list[Item]
    fields: list[str]  # every field an item's texts came from, in the order first seen


def read_benchmark(
    path: Path, name: str = "", fields: Sequence[str] = (), id_field: str = "id"
) -> Benchmark:
    """Read ``path`` (see the module docstring); ``fields`` empty: every string field."""
    if not path.exists():
        raise SourceError(f"{path}: no such benchmark file or folder ({FORMATS})")
    items: list[Item] = []
    seen: dict[str, None] = {}
    try:
        rows = list(_rows(path))
    except (OSError, ValueError, KeyError) as error:  # pyarrow's errors are ValueError/OSError
        raise SourceError(f"{path}: cannot read the benchmark ({error})") from None
    for row_id, row in rows:
        key = row.get(id_field)
        texts: list[str] = []
        for column in fields or [k for k, v in row.items() if isinstance(v, str) and k != id_field]:
            value = row.get(column)
            if value is None:
                continue
            strings = [value] if isinstance(value, str) else value
            if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
                raise SourceError(
                    f"{path}: row {row_id}: field {column!r} is {type(value).__name__}, "
                    "not text or a list of texts"
                )
            seen[column] = None
            texts.extend(strings)
        items.append(Item(str(key) if key is not None else row_id, tuple(texts)))
    if missing := [column for column in fields if column not in seen]:
        raise SourceError(
            f"{path}: no item has the field {missing[0]!r}; name fields its rows have "
            "(or none, for every string field)"
        )
    return Benchmark(name or path.name, path, items, list(seen))


def _rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(row id, row) of every row of a benchmark, by its format."""
    if path.is_dir():
        yield from _saved_dataset(path)
    elif path.suffix in (".jsonl", ".json"):
        yield from _jsonl(path)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from _numbered(_table_rows(pq.ParquetFile(path).iter_batches()))
    elif path.suffix in (".csv", ".tsv"):
        yield from _numbered(_csv(path))
    else:
        raise SourceError(f"{path}: not a benchmark file: {FORMATS} (.jsonl, .parquet, .csv)")


def _numbered(rows: Iterator[dict[str, Any]], prefix: str = "") -> Iterator[tuple[str, dict]]:
    for number, row in enumerate(rows, 1):
        yield f"{prefix}{number}", row


def _jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise SourceError(f"{path}:{number}: not a JSON line ({error})") from None
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{number}: a row must be a JSON object")
            yield str(number), row


def _csv(path: Path) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(sys.maxsize)  # a passage may be longer than csv's 128 KiB default
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            delimiter = "\t" if path.suffix == ".tsv" else ","
            yield from csv.DictReader(handle, delimiter=delimiter)
    except (UnicodeDecodeError, csv.Error) as error:
        raise SourceError(f"{path}: not a CSV file with a header ({error})") from None


def _table_rows(batches: Any) -> Iterator[dict[str, Any]]:
    for batch in batches:
        yield from batch.to_pylist()


def _saved_dataset(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a ``save_to_disk`` folder: a dataset dict's splits, or one dataset."""
    listing = folder / "dataset_dict.json"
    if listing.exists():
        for split in json.loads(listing.read_text(encoding="utf-8"))["splits"]:
            yield from _numbered(_arrow_rows(folder / split), f"{split}/")
    else:
        yield from _numbered(_arrow_rows(folder))


def _arrow_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """The rows of one saved dataset: its Arrow stream files in the order ``state.json`` lists."""
    import pyarrow as pa

    state = folder / "state.json"
    if not state.exists():
        raise SourceError(f"{folder}: a benchmark folder must be written by `save_to_disk`")
    names = [entry["filename"] for entry in json.loads(state.read_text("utf-8"))["_data_files"]]
    for name in names:
        with pa.memory_map(str(folder / name)) as source:
            yield from _table_rows(pa.ipc.open_stream(source))
