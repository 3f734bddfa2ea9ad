"""Reading imported datasets: every good row a record of ``import:<name>``, every bad row a
rejection named by ``file:row``, in JSONL and Parquet, and never an exception for a row."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laerebogen.errors import SourceError
from laerebogen.records import Example, Message, Rejection
from laerebogen.sources.imports import IMPORT_REJECTIONS, check_import_name, read_import

ALPACA = {"instruction": "Hvad hedder Danmarks hovedstad?", "input": "", "output": "København."}
WITH_INPUT = {"instruction": "Oversæt til engelsk.", "input": "Hej med dig", "output": "Hi you"}
CHAT = {
    "messages": [
        {"role": "user", "content": "Hvor ligger Odense?"},
        {"role": "assistant", "content": "På Fyn."},
    ]
}
LONG_CHAT = {
    "messages": [
        *CHAT["messages"],
        {"role": "user", "content": "Og Aalborg?"},
        {"role": "assistant", "content": "I Nordjylland."},
    ]
}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def encoded(row: object) -> bytes:
    return json.dumps(row, ensure_ascii=False).encode()


def split(items: list[Example | Rejection]) -> tuple[list[Example], list[Rejection]]:
    records = [item for item in items if isinstance(item, Example)]
    return records, [item for item in items if isinstance(item, Rejection)]


def test_good_rows_in_both_forms_become_records_of_the_import(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "data.jsonl",
        [encoded(ALPACA), encoded({**WITH_INPUT, "extra": 1}), encoded(CHAT), encoded(LONG_CHAT)],
    )
    records, rejections = split(list(read_import(path, "wiki-da")))
    assert rejections == []
    first, second, chat, long_chat = records
    assert (first.instruction, first.input, first.output) == (
        ALPACA["instruction"], "", "København.",
    )  # fmt: skip
    assert (second.input, second.output) == ("Hej med dig", "Hi you")
    assert (chat.instruction, chat.output, chat.messages) == ("Hvor ligger Odense?", "På Fyn.", ())
    assert long_chat.messages[2:] == (
        Message("user", "Og Aalborg?"), Message("assistant", "I Nordjylland."),
    )  # fmt: skip
    assert long_chat.conversation()[0] == Message("user", "Hvor ligger Odense?")
    for row, record in enumerate(records, start=1):
        assert record.provenance.source == "import:wiki-da"
        assert record.provenance.origin == "imported"
        assert record.provenance.steps[0].note == f"data.jsonl:{row}"
    # Ids depend on the name and the row: the same file reads the same, another name not.
    assert [r.id for r in split(list(read_import(path, "wiki-da")))[0]] == [r.id for r in records]
    assert {r.id for r in split(list(read_import(path, "other")))[0]}.isdisjoint(
        r.id for r in records
    )


BAD_ROWS = [
    (b"\xff\xfe not utf-8", "invalid_utf8"),
    (b'{"instruction": "cut off', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"question": "Hvad?", "answer": "Det."}', "unknown_form"),
    (b'{"instruction": 42, "output": "x"}', "wrong_type"),
    (b'{"instruction": "  ", "output": "x"}', "empty_instruction"),
    (b'{"instruction": "Hvad?", "output": null}', "empty_output"),
    (b'{"messages": "hej"}', "wrong_type"),
    (b'{"messages": [{"role": "assistant", "content": "Hej"}]}', "bad_roles"),
    (b'{"messages": [{"role": "user", "content": "Hej"}]}', "bad_roles"),
    (b'{"messages": [{"role": "system", "content": "Du er"}, {"role": "user", "content": "x"}]}',
     "system_message"),
    (b'{"messages": [{"role": "user", "content": "Hej"}, {"role": "assistant", "content": ""}]}',
     "empty_output"),
    (b'{"messages": [{"role": "user", "content": {"nested": ["junk"]}}]}', "wrong_type"),
]  # fmt: skip


def test_every_bad_row_is_a_rejection_with_its_row_and_the_rest_is_kept(tmp_path: Path) -> None:
    lines = [encoded(ALPACA), b""]
    lines += [line for line, _ in BAD_ROWS]
    lines.append(encoded(CHAT)[:-5])  # a truncated last line
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    records, rejections = split(list(read_import(path, "mixed")))
    assert len(records) == 1 and records[0].provenance.steps[0].note == "mixed.jsonl:1"
    expected = [(f"mixed.jsonl:{row}", reason) for row, (_, reason) in enumerate(BAD_ROWS, 3)]
    expected.append((f"mixed.jsonl:{len(lines)}", "invalid_json"))
    assert [(r.source_id, r.reason) for r in rejections] == expected
    assert all(r.reason in IMPORT_REJECTIONS and r.detail and r.raw for r in rejections)
    assert rejections[0].raw.endswith("not utf-8")


def test_multi_turn_conversations_are_rejected_where_they_cannot_enter(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "chats.jsonl", [encoded(CHAT), encoded(LONG_CHAT)])
    records, rejections = split(list(read_import(path, "chats", multi_turn=False)))
    assert [record.instruction for record in records] == ["Hvor ligger Odense?"]
    assert [(r.source_id, r.reason, r.detail) for r in rejections] == [
        ("chats.jsonl:2", "multi_turn", "2 exchanges")
    ]


def test_parquet_rows_in_both_forms_with_nulls(tmp_path: Path) -> None:
    alpaca = pa.table({
        "instruction": ["Hvad er 2 + 2?", None, "Nævn en ø."],
        "input": [None, "", "Danske øer"],
        "output": ["4", "x", "Bornholm"],
    })  # fmt: skip
    pq.write_table(alpaca, tmp_path / "alpaca.parquet")
    records, rejections = split(list(read_import(tmp_path / "alpaca.parquet", "pq")))
    assert [(r.instruction, r.input, r.output) for r in records] == [
        ("Hvad er 2 + 2?", "", "4"), ("Nævn en ø.", "Danske øer", "Bornholm"),
    ]  # fmt: skip
    assert [(r.source_id, r.reason) for r in rejections] == [
        ("alpaca.parquet:2", "empty_instruction")
    ]
    pq.write_table(pa.Table.from_pylist([CHAT, LONG_CHAT]), tmp_path / "chats.parquet")
    records, rejections = split(list(read_import(tmp_path / "chats.parquet", "pq")))
    assert rejections == [] and len(records[1].messages) == 4
    assert records[1].provenance.steps[0].note == "chats.parquet:2"


def test_a_file_that_cannot_be_read_at_all_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing\.jsonl: cannot read"):
        list(read_import(tmp_path / "missing.jsonl", "x"))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(SourceError, match=r"data\.csv: import JSONL"):
        list(read_import(tmp_path / "data.csv", "x"))
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match=r"fake\.parquet: not a readable Parquet file"):
        list(read_import(tmp_path / "fake.parquet", "x"))


@pytest.mark.parametrize("name", ["", "Wiki", "a b", "../x", "x" * 65, "-x"])
def test_import_names_are_checked(name: str) -> None:
    with pytest.raises(SourceError, match="import name"):
        check_import_name(name)
    assert check_import_name("wiki_da-2") == "wiki_da-2"


def test_a_byte_order_mark_is_read_and_a_json_array_file_is_one_error(tmp_path: Path) -> None:
    marked = tmp_path / "bom.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + encoded(ALPACA) + b"\n")
    [record] = read_import(marked, "bom")
    assert isinstance(record, Example) and record.output == "København."
    array = tmp_path / "alpaca_data.json"
    array.write_text("[\n" + json.dumps(ALPACA) + "\n]\n")
    with pytest.raises(SourceError, match=r"a JSON array over several lines.*jq -c"):
        list(read_import(array, "alpaca"))
