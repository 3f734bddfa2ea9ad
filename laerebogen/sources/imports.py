"""Existing instruction datasets read as records of the source ``import:<name>``.

A file is JSONL (``.jsonl``/``.json``, one object per line) or Parquet, each row in Alpaca form
(``instruction``, optional ``input``, ``output``) or messages form (``messages``: user and
assistant turns, alternating, from the user to the assistant). Other keys are ignored. Only a
file that cannot be read at all is an error; every row that cannot become a record is a
rejection named by ``file:row`` with one of :data:`IMPORT_REJECTIONS`, so that one bad row never
costs the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from laerebogen.errors import SourceError
from laerebogen.records import (
    IMPORT_PREFIX,
    Example,
    Message,
    Provenance,
    Rejection,
    Step,
    record_id,
)

IMPORT_STAGE = "import"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
RAW_CHARS = 300  # of a rejected row, kept for the user to see
IMPORT_REJECTIONS = {
    "invalid_utf8": "the line is not UTF-8",
    "invalid_json": "the line is not JSON",
    "not_an_object": "the row is not a JSON object",
    "unknown_form": "the row has neither instruction/output nor messages",
    "wrong_type": "a field is not a string (or messages not a list of role/content objects)",
    "empty_instruction": "the instruction or first user message is empty",
    "empty_output": "the output or an assistant message is empty",
    "bad_roles": "messages do not alternate user/assistant from a user to an assistant turn",
    "system_message": "a system message (records have no system turn)",
    "multi_turn": "more than one exchange, for a step before the follow-ups",
}


class _RowError(Exception):
    """Why a row is no record: a reason of :data:`IMPORT_REJECTIONS` and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def check_import_name(name: str) -> str:
    """``name`` if it can name an import (lower-case letters, digits, ``-``, ``_``)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SourceError(
            f"import name {name!r}: use 1-64 lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def read_import(path: Path, name: str, *, multi_turn: bool = True) -> Iterator[Example | Rejection]:
    """Each row of ``path`` as a record or a rejection, in file order; ``multi_turn`` False
    rejects conversations of more than one exchange."""
    check_import_name(name)
    for row, text, value in _rows(path):
        location = f"{path.name}:{row}"
        try:
            if isinstance(value, _RowError):
                raise value
            instruction, input, output, messages = _fields(value, multi_turn)
        except _RowError as rejected:
            yield Rejection(rejected.reason, location, rejected.detail, raw=text[:RAW_CHARS])
            continue
        yield Example(
            id=record_id(IMPORT_STAGE, name, row),
            instruction=instruction,
            input=input,
            output=output,
            messages=messages,
            provenance=Provenance(
                origin="imported",
                source=IMPORT_PREFIX + name,
                steps=(Step(stage=IMPORT_STAGE, note=location),),
            ),
        )


def _rows(path: Path) -> Iterator[tuple[int, str, Any]]:
    """(row number from 1, the row as text, its value or why it has none) of a file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        yield from _json_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise SourceError(f"{path}: import JSONL (.jsonl, .json) or Parquet (.parquet) files")


def _json_rows(path: Path) -> Iterator[tuple[int, str, Any]]:
    try:
        handle = path.open("rb")
    except OSError as error:
        raise SourceError(f"{path}: cannot read: {error.strerror or error}") from None
    with handle:
        for row, whole_line in enumerate(handle, start=1):
            raw = whole_line.rstrip(b"\r\n")
            if row == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as editors write
                if raw.strip() == b"[":
                    raise SourceError(
                        f"{path}: a JSON array over several lines, not one object per line; "
                        f"convert it with: jq -c '.[]' {path.name} > {path.stem}.jsonl"
                    )
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                text = raw.decode("utf-8", "replace")
                yield row, text, _RowError("invalid_utf8", f"byte {error.start} is not UTF-8")
                continue
            try:
                yield row, text, json.loads(text)
            except json.JSONDecodeError as error:
                yield row, text, _RowError("invalid_json", f"{error.msg} at column {error.colno}")


def _parquet_rows(path: Path) -> Iterator[tuple[int, str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise SourceError(f"{path}: not a readable Parquet file: {error}") from None
    row = 0
    for batch in table.iter_batches():
        for value in batch.to_pylist():
            row += 1
            yield row, json.dumps(value, ensure_ascii=False, default=str), value


def _fields(value: Any, multi_turn: bool) -> tuple[str, str, str, tuple[Message, ...]]:
    """(instruction, input, output, messages) of a row; raises :class:`_RowError`."""
    if not isinstance(value, dict):
        raise _RowError("not_an_object", f"a JSON {type(value).__name__}, not an object")
    if value.get("messages") is not None:
        return _conversation(value["messages"], multi_turn)
    if "instruction" not in value or "output" not in value:
        raise _RowError("unknown_form", f"keys {', '.join(sorted(value)) or '(none)'}")
    instruction, input, output = (_text(value, key) for key in ("instruction", "input", "output"))
    if not instruction:
        raise _RowError("empty_instruction", "the instruction is empty")
    if not output:
        raise _RowError("empty_output", "the output is empty")
    return instruction, input, output, ()


def _text(value: dict, key: str) -> str:
    """A string field, stripped; a missing or null one is empty."""
    text = value.get(key)
    if text is None:
        return ""
    if not isinstance(text, str):
        raise _RowError("wrong_type", f"{key!r} is a {type(text).__name__}, not a string")
    return text.strip()


def _conversation(turns: Any, multi_turn: bool) -> tuple[str, str, str, tuple[Message, ...]]:
    if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
        raise _RowError("wrong_type", "'messages' is not a list of objects")
    messages = []
    for index, turn in enumerate(turns):
        role, content = turn.get("role"), _text(turn, "content")
        if role == "system":
            raise _RowError("system_message", f"message {index} is a system message")
        if role != ("user", "assistant")[index % 2]:
            raise _RowError("bad_roles", f"message {index} has role {role!r}")
        if not content:
            empty = "empty_instruction" if role == "user" else "empty_output"
            raise _RowError(empty, f"message {index} ({role}) is empty")
        messages.append(Message(role, content))
    if len(messages) < 2 or len(messages) % 2:
        raise _RowError("bad_roles", f"{len(messages)} messages: not whole user/assistant turns")
    if len(messages) > 2 and not multi_turn:
        raise _RowError("multi_turn", f"{len(messages) // 2} exchanges")
    whole = tuple(messages) if len(messages) > 2 else ()
    return messages[0].content, "", messages[1].content, whole
