"""``laerebogen import``: a dataset checked as a run would import it, rejections by file:row."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.commands import cli

ROWS = [
    {"instruction": "Nævn tre gode råd til at spare på strømmen i et dansk hjem.",
     "output": "Sluk apparater i stedet for at lade dem stå på standby, skift til LED-pærer, og "
               "vask tøjet ved lavere temperatur, når det er muligt."},
    {"instruction": "Hvad?"},
    {"messages": [{"role": "user", "content": "Hvad er en god dansk ret til en kold vinteraften?"},
                  {"role": "assistant", "content": "Grønlangkål med flæsk og kartofler er et "
                                                   "godt og varmende valg en kold aften."},
                  {"role": "user", "content": "Hvordan går det?"},
                  {"role": "assistant", "content": "Det går godt, tak fordi du spørger."}]},
]  # fmt: skip


def test_import_prints_what_a_run_would_keep_and_writes_the_rejections(tmp_path: Path) -> None:
    source = tmp_path / "eget.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS))
    rejects = tmp_path / "afvist.jsonl"
    result = cli("import", str(source), "--name", "eget", "--config", "tiny",
                 "--rejects", str(rejects))  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{source}: 3 rows as import:eget: kept 1, rejected 2"
    assert "eget.jsonl:2: unknown_form: keys instruction" in lines
    assert "eget.jsonl:3: multi_turn: 2 exchanges" in lines
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["source_id"], r["reason"]) for r in written] == [
        ("eget.jsonl:2", "unknown_form"), ("eget.jsonl:3", "multi_turn"),
    ]  # fmt: skip
    # Conversations are kept for an import that enters at a judging step.
    again = cli("import", str(source), "--name", "eget", "--config", "tiny", "--multi-turn")
    assert again.stdout.startswith(f"{source}: 3 rows as import:eget: kept 2, rejected 1")


def test_a_bad_name_or_file_is_one_line(tmp_path: Path) -> None:
    bad = cli("import", str(tmp_path / "x.jsonl"), "--name", "Store Bogstaver")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("laerebogen: error: import name")
    missing = cli("import", str(tmp_path / "x.csv"), "--name", "x")
    assert missing.returncode == 2 and "import JSONL (.jsonl, .json) or Parquet" in missing.stderr
