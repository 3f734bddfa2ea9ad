"""Imports in a run: read once, screened and deduplicated against the seeds, and handed to the
step the config names; a wrong name, step or file stops the run before it writes anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.errors import ConfigError, SourceError
from laerebogen.pipeline.imports import check_imports, import_sources, import_summary
from laerebogen.pipeline.plan import plan_first, plan_next
from laerebogen.seeds import load_seeds, seed_examples
from laerebogen.store.saved_config import start_run
from tests.support.records import make_example

GOOD = [
    {"instruction": "Forklar forskellen på vejr og klima med et eksempel fra Danmark.",
     "output": "Vejr er atmosfærens tilstand her og nu, for eksempel regn i Aarhus i dag. Klima er "
               "gennemsnittet af vejret over mange år, for eksempel milde vintre i Danmark."},
    {"instruction": "Nævn tre gode råd til at spare på strømmen i et dansk hjem.",
     "output": "Sluk apparater i stedet for at lade dem stå på standby, skift til LED-pærer, og "
               "vask tøjet ved lavere temperatur, når det er muligt."},
]  # fmt: skip
ENGLISH = {
    "instruction": "Explain the difference between weather and climate with an example.",
    "output": "Weather is the state of the atmosphere right now, while climate is the average "
    "of the weather over many years in a place.",
}
CONVERSATION = {
    "messages": [
        {"role": "user", "content": GOOD[0]["instruction"]},
        {"role": "assistant", "content": GOOD[0]["output"]},
        {"role": "user", "content": "Kan du give endnu et eksempel på klima i Danmark?"},
        {"role": "assistant", "content": "Ja, Danmark har et tempereret kystklima med meget regn "
                                         "og vind hele året rundt."},
    ]
}  # fmt: skip


def dataset(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def config_with(tmp_path: Path, step: str, rows: list[object]) -> tuple[Config, Path]:
    path = dataset(tmp_path / "import.jsonl", rows)
    overrides = [f'sources.imports.eget={{path = "{path}", step = "{step}"}}']
    return load_config("tiny", overrides), path


def test_an_import_is_screened_deduplicated_and_enters_at_its_step(tmp_path: Path) -> None:
    seed = next(iter(seed_examples(load_seeds(load_config("tiny").seed_path()))))
    copy = {"instruction": seed.instruction, "input": seed.input, "output": seed.output}
    config, path = config_with(tmp_path, "grammar", [*GOOD, ENGLISH, copy, "junk", CONVERSATION])
    store = start_run(config, tmp_path / "run")
    [result] = import_sources(store, config)
    assert (result.name, result.path, result.step) == ("eget", str(path), "grammar")
    assert (result.rows, result.kept) == (6, 2)
    assert result.rejected == {
        "near_duplicate": 1, "not_an_object": 1, "multi_turn": 1, "not_danish": 1,
    }  # fmt: skip
    rejections = list(store.read_merge_rejects("import-eget"))
    assert {(r.source_id, r.reason) for r in rejections} == {
        ("import.jsonl:3", "not_danish"), ("import.jsonl:4", "near_duplicate"),
        ("import.jsonl:5", "not_an_object"), ("import.jsonl:6", "multi_turn"),
    }  # fmt: skip
    assert import_summary(result).startswith("import-eget: 6 rows of ")
    # Imported once: a rerun reads the result, not the file.
    path.unlink()
    assert import_sources(store, config) == [result]
    # The step it enters at gets its records after the base sources' records.
    first = plan_first(store, config)
    base = [make_example(index) for index in range(24)]
    with store.open_merged("generation-01") as writer:
        writer.write_chunk(base, [], consumed=[record.id for record in base])
        writer.finish()
    grammar = plan_next(store, config, first)
    assert grammar is not None and grammar.inputs == 26
    shards = range(grammar.shards)
    inputs = [record for shard in shards for record in store.read_inputs("grammar", shard)]
    assert [record.instruction for record in inputs[24:]] == [row["instruction"] for row in GOOD]
    assert {record.provenance.source for record in inputs[24:]} == {"import:eget"}


def test_conversations_may_enter_at_a_judging_step(tmp_path: Path) -> None:
    path = dataset(tmp_path / "import.jsonl", [CONVERSATION])
    imports = f'sources.imports.eget={{path = "{path}", step = "annotate"}}'
    config = load_config("tiny", ["annotate.enabled=true", imports])
    store = start_run(config, tmp_path / "run")
    [result] = import_sources(store, config)
    assert (result.kept, result.rejected) == (1, {})
    [record] = store.read_merged("import-eget")
    assert len(record.conversation()) == 4


def test_a_wrong_step_file_or_name_is_one_line_before_the_run(tmp_path: Path) -> None:
    config, path = config_with(tmp_path, "evolution-09", GOOD)
    with pytest.raises(ConfigError, match=r"sources\.imports\.eget\.step: 'evolution-09' is not"):
        check_imports(config)
    path.unlink()
    config, _ = config_with(tmp_path, "grammar", GOOD)
    (tmp_path / "import.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"sources\.imports\.eget\.path: no file"):
        check_imports(config)
    named = load_config("tiny", [f'sources.imports.Eget={{path = "{path}"}}'])
    with pytest.raises(SourceError, match="import name 'Eget'"):
        check_imports(named)
