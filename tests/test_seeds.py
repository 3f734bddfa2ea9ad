"""Seed tasks: the packaged set, the loader's errors and the checker."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from laerebogen.commands.seed_report import check_seeds
from laerebogen.errors import SeedError
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from tests.support.commands import cli
from tests.support.paths import REPOSITORY

CATEGORIES = {
    "open_qa", "classification", "extraction", "rewriting", "summarisation", "brainstorming",
    "creative_writing", "math_logic", "code", "grammar_spelling", "table", "society", "history",
    "geography", "nature", "culture", "food", "letters_emails", "translation", "advice",
    "comparison",
}  # fmt: skip


@pytest.fixture(scope="module")
def packaged() -> list:
    return load_seeds(packaged_seed_path())


def test_packaged_seeds_are_the_repository_file() -> None:
    repository_file = REPOSITORY / "seeds" / "seed_tasks.jsonl"
    assert packaged_seed_path().read_bytes() == repository_file.read_bytes()


def test_packaged_seeds_have_the_promised_size_shape_and_breadth(packaged: list) -> None:
    report = check_seeds(packaged)
    assert report.tasks >= 176
    assert 0.28 <= report.input_share <= 0.40
    assert set(report.by_category) == CATEGORIES
    assert min(report.by_category.values()) >= 6
    assert report.words["output"]["min"] <= 3 and report.words["output"]["max"] >= 150
    assert all(task.metadata is not None for task in packaged)
    assert all(task.name for task in packaged)
    assert report.near_duplicates == []


def test_every_seed_becomes_one_record_with_seed_provenance(packaged: list) -> None:
    records = list(seed_examples(packaged))
    assert len(records) == sum(len(task.instances) for task in packaged)
    assert len({record.id for record in records}) == len(records)
    assert {record.provenance.origin for record in records} == {"seed"}
    assert all(record.instruction and record.output for record in records)
    assert records == list(seed_examples(packaged))  # ids are stable


def write_lines(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "seeds.jsonl"
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def task(task_id: str = "t1", **changes: object) -> dict:
    base = {
        "id": task_id,
        "name": "navn",
        "instruction": "Nævn tre danske øer.",
        "instances": [{"input": "", "output": "Fyn, Lolland og Bornholm."}],
        "is_classification": False,
        "metadata": {"category": "geography", "has_input": False},
    }
    return {**base, **changes}


def test_plain_upstream_seed_files_load(tmp_path: Path) -> None:
    upstream = {
        "id": "seed_task_0",
        "name": "breakfast",
        "instruction": "Giv to forslag til morgenmad.",
        "instances": [
            {"input": "", "output": "Havregrød og rugbrød."},
            {"input": "Uden gluten", "output": "Yoghurt med bær og omelet."},
        ],
        "is_classification": None,
    }
    path = write_lines(
        tmp_path,
        upstream,
        {k: v for k, v in upstream.items() if k != "is_classification"} | {"id": "x"},
    )
    tasks = load_seeds(path)
    assert len(tasks) == 2 and tasks[0].metadata is None and tasks[0].is_classification is None
    records = list(seed_examples(tasks))
    assert len(records) == 4 and records[1].input == "Uden gluten"


def test_seed_sets_with_metadata_of_their_own_load(tmp_path: Path) -> None:
    # Another Danish seed set's shape: its own metadata keys, no category.
    other = task(
        "o1",
        instruction="Hvor gammel blev H.C. Andersen?",
        instances=[{"input": "", "output": "Han blev 70 år."}],
        metadata={"source": "håndskrevet", "has_input": False, "original_source": "ny"},
    )
    bare = task("o2", metadata={"source": "håndskrevet"})
    tasks = load_seeds(write_lines(tmp_path, other, bare, task("o3")))
    assert [t.metadata.category if t.metadata else None for t in tasks] == [None, None, "geography"]
    report = check_seeds(tasks)
    assert report.by_category == {"(none)": 2, "geography": 1} and report.uncategorised == 2
    assert len(list(seed_examples(tasks))) == 3
    # has_input is still checked where a seed set gives it.
    wrong = task("o4", metadata={"source": "x", "has_input": True})
    with pytest.raises(SeedError, match="has_input is True"):
        load_seeds(write_lines(tmp_path, wrong))


def test_seeds_check_reports_uncategorised_tasks_of_other_files(tmp_path: Path) -> None:
    other = write_lines(tmp_path, task("o1", metadata={"source": "x", "has_input": False}))
    result = cli("seeds", "check", str(other))
    assert result.returncode == 0, result.stderr
    assert "(none)" in result.stdout and "1 tasks" in result.stdout


def test_the_packaged_seed_file_must_name_every_category(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from laerebogen.cli import SeedsCommands
    from laerebogen.commands import seed_report
    from laerebogen.errors import LaerebogenError

    assert check_seeds(load_seeds(packaged_seed_path())).uncategorised == 0
    uncategorised = write_lines(tmp_path, task("o1", metadata={"has_input": False}))
    SeedsCommands().check(str(uncategorised))  # another file: reported, not an error
    monkeypatch.setattr(seed_report, "packaged_seed_path", lambda: uncategorised)
    with pytest.raises(LaerebogenError, match=r"1 tasks without metadata\.category"):
        SeedsCommands().check()


BAD_LINES = [
    ('{"id": "t2", "instruction": ', "the JSON object does not end on this line"),
    ("{t2}", "not valid JSON (byte 1): expected one JSON object per line"),
    (json.dumps(task("t2", instruction=None)), "Expected str, got null at instruction"),
    (json.dumps({"id": "t2", "instances": []}), "no 'instruction': a task needs id, instruction"),
    (json.dumps(task("t2", instruction="  ")), "empty instruction"),
    (json.dumps(task("t2", instances=[])), "no instances"),
    (json.dumps(task("t2", instances=[{"input": "", "output": ""}])), "instance 1 has an empty"),
    (json.dumps(task("t2", metadata={"category": "x", "has_input": True})), "has_input is True"),
    (json.dumps(task("t1")), "duplicate id 't1' (first on line 1)"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_a_malformed_line_is_named_with_file_line_and_what_is_wrong(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = write_lines(tmp_path, task("t1"), line)
    with pytest.raises(SeedError) as caught:
        load_seeds(path)
    summary, problem = str(caught.value).split("\n")
    assert summary.startswith(f"{path}: 1 bad line(s); each line is one task, a JSON object")
    assert problem.startswith(f"{path}:2: ") and reason in problem


def test_every_bad_line_is_named_at_once(tmp_path: Path) -> None:
    path = write_lines(tmp_path, task("t1"), *(line for line, _ in BAD_LINES), task("t3"))
    with pytest.raises(SeedError) as caught:
        load_seeds(path)
    problems = str(caught.value).splitlines()[1:]
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{path}:{n}" for n in range(2, 2 + len(BAD_LINES))
    ]


def test_near_duplicates_are_found(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        task("a", instruction="Nævn tre store danske øer i Østersøen."),
        task("b", instruction="Nævn tre store danske øer i Kattegat."),
        task("c", instruction="Forklar, hvordan man bager rugbrød med surdej."),
    )
    report = check_seeds(load_seeds(path))
    assert [(a, b) for a, b, _ in report.near_duplicates] == [("a", "b")]


def test_seeds_check_command(tmp_path: Path) -> None:
    ok = cli("seeds", "check")
    assert ok.returncode == 0, ok.stderr
    assert "tasks" in ok.stdout and "by category:" in ok.stdout and "none" in ok.stdout
    bad = write_lines(tmp_path, task("t1"), "{not json")
    failed = cli("seeds", "check", str(bad))
    assert failed.returncode == 2 and f"{bad}:2:" in failed.stderr
    dup = write_lines(
        tmp_path,
        task("a", instruction="Nævn tre store danske øer i Østersøen."),
        task("b", instruction="Nævn tre store danske øer i Kattegat."),
    )
    duplicated = cli("seeds", "check", str(dup))
    assert duplicated.returncode == 2 and "a ~ b" in duplicated.stdout


def test_the_wheel_ships_the_seeds(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPOSITORY)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("laerebogen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("laerebogen/data/seed_tasks.jsonl")
        assert "laerebogen/config/presets/gemma-27b.toml" in archive.namelist()
    assert shipped == (REPOSITORY / "seeds" / "seed_tasks.jsonl").read_bytes()
