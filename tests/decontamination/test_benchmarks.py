"""Benchmark files of every supported format read as the same items, and unreadable ones as a
one-line error naming the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laerebogen.decontamination.benchmarks import read_benchmark
from laerebogen.decontamination.ngrams import Item
from laerebogen.errors import SourceError

ROWS = [
    {"id": "da-1", "question": "Hvem skrev Den grimme ælling?", "answer": "H.C. Andersen"},
    {"id": "da-2", "question": "Hvor ligger Skagen?", "answer": "I Nordjylland"},
]
ITEMS = [
    Item("da-1", ("Hvem skrev Den grimme ælling?", "H.C. Andersen")),
    Item("da-2", ("Hvor ligger Skagen?", "I Nordjylland")),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_jsonl_parquet_csv_and_a_saved_dataset_give_the_same_items(tmp_path: Path) -> None:
    import datasets

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "b.parquet")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    files = [
        write_jsonl(tmp_path / "b.jsonl", ROWS),
        tmp_path / "b.parquet",
        write_csv(tmp_path / "b.csv", ROWS),
        tmp_path / "saved",
    ]
    for path in files:
        benchmark = read_benchmark(path)
        assert benchmark.items == ITEMS, path
        assert benchmark.fields == ["question", "answer"] and benchmark.name == path.name


def test_a_dataset_dict_reads_every_split_and_rows_without_ids_are_numbered(
    tmp_path: Path,
) -> None:
    import datasets

    plain = [{key: row[key] for key in ("question", "answer")} for row in ROWS]
    splits = {"validation": plain[:1], "test": plain}
    datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}
    ).save_to_disk(str(tmp_path / "dict"))
    ids = [item.id for item in read_benchmark(tmp_path / "dict").items]
    assert ids == ["validation/1", "test/1", "test/2"]
    assert [item.id for item in read_benchmark(write_jsonl(tmp_path / "p.jsonl", plain)).items] == [
        "1",
        "2",
    ]


def test_named_fields_and_lists_of_texts(tmp_path: Path) -> None:
    rows = [{"qid": 7, "question": "Hvad er 2+2?", "choices": ["3", "4", "fire"], "n": 1}]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    benchmark = read_benchmark(path, "mc", ["question", "choices"], id_field="qid")
    assert benchmark.items == [Item("7", ("Hvad er 2+2?", "3", "4", "fire"))]
    assert benchmark.name == "mc"
    # By default only the string fields: not the number, not the list.
    assert read_benchmark(path).items == [Item("1", ("Hvad er 2+2?",))]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("gone.jsonl", None, "gone.jsonl: no such benchmark file or folder"),
        ("bad.jsonl", '{"q": "a"}\n{"q": \n', "bad.jsonl:2: not a JSON line"),
        ("list.jsonl", '["a", "b"]\n', "list.jsonl:1: a row must be a JSON object"),
        ("b.txt", "hej\n", "b.txt: not a benchmark file"),
        ("broken.parquet", "not parquet", "broken.parquet: cannot read the benchmark"),
    ],
)
def test_an_unreadable_benchmark_is_one_line_naming_it(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / name).write_text(content, "utf-8")
    with pytest.raises(SourceError) as error:
        read_benchmark(tmp_path / name)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_field_no_item_has_or_of_the_wrong_type_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "b.jsonl", ROWS)
    with pytest.raises(SourceError, match="no item has the field 'context'"):
        read_benchmark(path, fields=["question", "context"])
    path = write_jsonl(tmp_path / "c.jsonl", [*ROWS, {"id": "x", "question": 3}])
    with pytest.raises(SourceError, match=r"c\.jsonl: row 3: field 'question' is int"):
        read_benchmark(path, fields=["question"])
    with pytest.raises(SourceError, match=r"a benchmark folder must be written by `save_to_disk`"):
        read_benchmark(tmp_path)
