"""Screening (heuristics, then language) and the stand-alone filter command."""

from __future__ import annotations

import json
from pathlib import Path

from laerebogen.filtering.screening import Screener
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from tests.support.commands import cli

MIXED = [
    {"instruction": "Forklar hvorfor man skal drikke vand, når man løber.", "input": "",
     "output": "Kroppen mister væske gennem sved, og derfor skal man drikke undervejs."},
    {"instruction": "Beskriv billedet nedenfor i detaljer.", "input": "", "output": "Et hus."},
    {"instruction": "Hva er hovedstaden i Norge, og hvorfor ble den valgt?", "input": "",
     "output": "Oslo ble hovedstad fordi byen var et viktig handelssenter."},
    {"instruction": "Forklar hvad en vulkan er med få ord.", "input": "",
     "output": "A volcano is an opening in the crust of the Earth where molten rock escapes."},
    {"instruction": "Hej", "input": "", "output": "Hej med dig."},
]  # fmt: skip


def test_heuristics_come_first_and_language_judges_the_rest() -> None:
    triples = [(r["instruction"], r["input"], r["output"]) for r in MIXED]
    screenings = Screener().screen(triples)
    reasons = [s.rejection.reason if s.rejection else None for s in screenings]
    assert reasons == [None, "banned_topic", "not_danish", "not_danish", "instruction_too_short"]
    assert screenings[0].language_confidence is not None and screenings[0].language_confidence > 0.3
    assert screenings[1].language_confidence is None  # never reached the language filter
    assert screenings[3].rejection.detail == "output: English words the, of, where"


def test_every_seed_passes_both_filters() -> None:
    examples = list(seed_examples(load_seeds(packaged_seed_path())))
    screenings = Screener().screen([(e.instruction, e.input, e.output) for e in examples])
    failing = [
        (e.id, s.rejection) for e, s in zip(examples, screenings, strict=True) if s.rejection
    ]
    assert failing == []


def test_filter_command_writes_kept_lines_rejects_and_a_funnel(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(record, ensure_ascii=False) for record in MIXED]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    kept, rejects = tmp_path / "kept.jsonl", tmp_path / "rejects.jsonl"
    result = cli("filter", str(source), str(kept), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert "read 5, kept 1, rejected 4" in result.stdout
    assert "not_danish                     2" in result.stdout
    assert kept.read_text(encoding="utf-8").splitlines() == [lines[0]]
    rejected = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [r["reason"] for r in rejected] == [
        "banned_topic", "not_danish", "not_danish", "instruction_too_short",
    ]  # fmt: skip
    assert rejected[0]["location"] == f"{source}:2" and rejected[0]["record"] == MIXED[1]


def test_filter_command_reads_seed_files_and_takes_the_banned_list_from_a_config(
    tmp_path: Path,
) -> None:
    target = tmp_path / "kept.jsonl"
    plain = cli("filter", str(packaged_seed_path()), str(target))
    assert plain.returncode == 0 and "read 176, kept 176, rejected 0" in plain.stdout
    custom = cli(
        "filter", str(packaged_seed_path()), str(target),
        "--config", "tiny", "--set", 'filters.banned_words=["opskrift"]',
    )  # fmt: skip
    assert custom.returncode == 0, custom.stderr
    assert "banned_topic" in custom.stdout
    assert all("opskrift" not in json.loads(line)["instruction"].lower()
               for line in target.read_text(encoding="utf-8").splitlines())  # fmt: skip
