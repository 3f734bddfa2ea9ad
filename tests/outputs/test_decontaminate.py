"""Decontamination of a finished run: contaminated conversations leave both versions, the card
and stats.json say against what and how many, and ``laerebogen decontaminate`` adds benchmarks
to the run or only reports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from laerebogen.commands.dataset import run_dataset
from laerebogen.config.loading import load_config
from laerebogen.errors import SourceError
from laerebogen.outputs.decontaminate import AGAINST_FILE, REPORT_FILE
from laerebogen.outputs.publish import publish, publish_summary
from laerebogen.outputs.report import STATS_FILE
from tests.support.commands import laerebogen
from tests.support.finished_run import GOOD_ANSWER, final_conversations, finished_run, read_lines

# Conversations 0, 2 and 3 ask it second; 1, 4 and 5 do not. 6 words: it must occur whole.
QUESTION = "Er grønne æbler bedre end røde?"
BENCHMARK = [
    {"id": "frugt-17", "spørgsmål": QUESTION, "svar": "Fordi de indeholder fibre."},
    {"id": "frugt-18", "spørgsmål": "Hvilken frugt er mest sund for børn?", "svar": "Æbler"},
]


def write_benchmark(path: Path, rows: list[dict] = BENCHMARK) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def dataset_ids(path: Path) -> list[str]:
    return [line["id"] for line in read_lines(path)]


def test_contaminated_conversations_leave_both_versions_and_the_card_says_why(
    tmp_path: Path,
) -> None:
    bench = write_benchmark(tmp_path / "frugt.jsonl")
    store, config = finished_run(tmp_path, overrides=[f"decontamination.files=['{bench}']"])
    records = final_conversations()
    published = publish(store, config, with_metadata=True)
    clean = [records[index].id for index in (1, 4, 5)]
    assert dataset_ids(published.export.complete) == clean
    assert dataset_ids(published.export.filtered) == [records[5].id]  # 0 passed too, now gone
    stats = json.loads((store.root / STATS_FILE).read_text("utf-8"))
    assert stats["conversations"] == 3 and stats["filtered"] == 1
    found = stats["decontamination"]
    assert (found["checked"], found["contaminated"], found["removed"]) == (6, 3, 3)
    assert found["ngram"] == config.decontamination.ngram and found["answers"] is False
    (benchmark,) = found["benchmarks"]
    assert benchmark["name"] == "frugt.jsonl" and benchmark["items"] == 2
    assert benchmark["fields"] == ["spørgsmål", "svar"] and benchmark["unmatchable"] == 0
    assert benchmark["contaminated"] == 3
    assert benchmark["top_items"] == [{"id": "frugt-17", "conversations": 3}]
    card = published.card.read_text("utf-8")
    section = card.split("## Decontamination\n")[1].split("\n## ")[0]
    assert "| `frugt.jsonl` | 2 | `spørgsmål`, `svar` | 0 | 3 | `frugt-17` (3) |" in section
    assert "**3** contaminated conversations were removed" in section
    assert QUESTION not in section  # ids, never a benchmark's text
    assert "decontamination (10-grams of the user's messages)" in publish_summary(published)


def test_answers_are_matched_only_when_asked(tmp_path: Path) -> None:
    rows = [{"id": "svar-1", "text": GOOD_ANSWER}]  # the answer of conversations 0, 2 and 3
    bench = write_benchmark(tmp_path / "svar.jsonl", rows)
    files = f"decontamination.files=[{{ path = '{bench}', name = 'Svar' }}]"
    store, config = finished_run(tmp_path, overrides=[files])
    assert len(dataset_ids(publish(store, config, with_metadata=True).export.complete)) == 6
    store, config = finished_run(
        tmp_path, name="answers", overrides=[files, "decontamination.answers=true"]
    )
    published = publish(store, config, with_metadata=True)
    # 5's answer is the same text about blueberries: it shares the 10-grams after its first word.
    assert len(dataset_ids(published.export.complete)) == 2
    assert "The messages of all 6 conversations" in published.card.read_text("utf-8")


def test_a_run_without_benchmarks_says_it_was_not_checked(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    published = publish(store, config)
    assert published.export.count == 6
    assert json.loads((store.root / STATS_FILE).read_text("utf-8"))["decontamination"] is None
    assert "Not checked against any evaluation set" in published.card.read_text("utf-8")


def test_the_command_adds_benchmarks_to_the_run_or_only_reports(tmp_path: Path) -> None:
    store, _ = finished_run(tmp_path)
    bench = write_benchmark(tmp_path / "frugt.jsonl")
    other = write_benchmark(tmp_path / "other.jsonl", BENCHMARK[1:])
    dataset = store.root / "dataset.jsonl"

    only = laerebogen("decontaminate", "--run", str(store.root), "--against", str(bench),
                      "--report-only")  # fmt: skip
    assert only.returncode == 0, only.stderr
    assert "3 of 6 conversations contaminated, 0 removed" in only.stdout
    report = json.loads((store.root / REPORT_FILE).read_text("utf-8"))
    assert report["contaminated"] == 3 and report["removed"] == 0
    assert not dataset.exists() and not (store.root / AGAINST_FILE).exists()

    done = laerebogen("decontaminate", str(store.root), "--against", str(bench), str(other),
                      "--fields", "spørgsmål")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "frugt.jsonl: 2 items, 3 conversations; most matched: frugt-17 (3)" in done.stdout
    assert "other.jsonl: 1 items, 0 conversations" in done.stdout
    assert len(read_lines(dataset)) == 3
    against = json.loads((store.root / AGAINST_FILE).read_text("utf-8"))
    assert [entry["fields"] for entry in against["files"]] == [["spørgsmål"], ["spørgsmål"]]
    # A later export applies the benchmarks the run was given.
    again = laerebogen("export", str(store.root))
    assert again.returncode == 0, again.stderr
    assert len(read_lines(dataset)) == 3 and "3 removed" in again.stdout


def test_a_bad_benchmark_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    store, _ = finished_run(tmp_path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"q": "Hvad?"}\nnot json\n', "utf-8")
    result = laerebogen("decontaminate", str(store.root), "--against", str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith("laerebogen: error: ")
    assert "broken.jsonl:2: not a JSON line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (store.root / AGAINST_FILE).exists() and not (store.root / "dataset.jsonl").exists()
    missing = laerebogen("decontaminate", str(store.root))
    assert missing.returncode == 2 and "missing AGAINST" in missing.stderr


def test_a_wrong_benchmark_stops_a_run_before_it_writes_anything(tmp_path: Path) -> None:
    config = load_config("tiny", [f"decontamination.files=['{tmp_path / 'gone.jsonl'}']"])
    with pytest.raises(SourceError, match=r"gone\.jsonl: no such benchmark file or folder"):
        run_dataset(config, tmp_path / "run", "debug", out=io.StringIO())
    assert not (tmp_path / "run").exists()
