"""The browse page's data: each conversation's lineage through the run, the table's columns,
files split on demand, every rejection, the map, and the folder replaced whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from laerebogen.inference.requests import CompletionRequest
from laerebogen.outputs import browse
from laerebogen.outputs.browse import write_browse
from laerebogen.outputs.publish import MAP_PLOT, publish
from laerebogen.records import Example, Provenance
from laerebogen.seeds import SEED_STAGE
from laerebogen.stages.core import Context
from laerebogen.stages.followups import FollowupStage, choose_kind
from laerebogen.stages.generation import GenerationStage
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config
from tests.support.commands import laerebogen
from tests.support.lineage_run import (
    CORRECTED,
    EVOLVED,
    FOLLOWUP,
    IMPROVED,
    REJECTED,
    SLOT,
    lineage_run,
)


def data(folder: Path, name: str) -> Any:
    """The value a data file hands to ``LB.load``, checking the call around it."""
    text = (folder / "data" / f"{name}.js").read_text("utf-8")
    prefix = f'LB.load("{name}", '
    assert text.startswith(prefix) and text.endswith(");\n")
    return json.loads(text[len(prefix) : -3])


def conversations(folder: Path) -> list[dict]:
    meta = data(folder, "meta")
    chunks = -(-meta["conversations"] // meta["conv_chunk"])
    return [item for k in range(chunks) for item in data(folder, f"conv-{k:04d}")["items"]]


@pytest.fixture
def page(tmp_path: Path) -> tuple[RunStore, Path]:
    store, config = lineage_run(tmp_path)
    result = write_browse(store, config, log=lambda _: None)
    assert result.index == store.root / "browse" / "index.html" and result.index.is_file()
    return store, result.index.parent


def test_an_evolved_conversation_shows_each_step_with_the_text_it_left(
    page: tuple[RunStore, Path],
) -> None:
    store, folder = page
    evolved = conversations(folder)[0]
    assert evolved["generation"] == 1 and evolved["operation"] == "add_constraints"
    events = evolved["lineage"]
    steps = [event["step"] for event in events]
    assert steps == ["generation-01", "grammar", "quality", "evolution-01", "followups", "annotate"]
    generation, grammar, quality, evolution, followups, _ = events
    assert (generation["model"], generation["seed"], generation["shard"]) == ("tiny", 101, 1)
    assert grammar["note"] == "corrected" and grammar["text"]["instruction"] == CORRECTED
    assert quality["note"] == "good" and quality["text"] is None  # unchanged: no text
    assert grammar["record"] == generation["record"] == quality["record"] != evolution["record"]
    assert evolution["record"] == evolved["id"] and evolution["text"]["instruction"] == EVOLVED
    assert evolution["operation"] == "add_constraints" and generation["operation"] is None
    assert "shots" not in grammar and "kinds" not in grammar
    # The follow-up kinds are the stage's own draw for this record.
    context = Context(run_seed=run_config(store).seed, round=0)
    drawn = choose_kind(context.seed(FollowupStage.name, evolved["id"], "kind-0"))[0]
    assert followups["kinds"] == [drawn] and followups["note"] == "turns=1/1"


def test_the_seed_tasks_shown_are_those_of_the_prompt_the_stage_sends(
    page: tuple[RunStore, Path],
) -> None:
    store, folder = page
    config = run_config(store)
    shots = conversations(folder)[1]["lineage"][0]["shots"]
    assert len(shots) == config.generation.seeds_per_prompt
    stage = GenerationStage(config.generation, list(store.read_records(SEED_STAGE, 0)))
    slot = Example(id=SLOT, instruction="", provenance=Provenance("seed"))
    request = next(stage.process(slot, Context(run_seed=config.seed, round=1)))
    assert isinstance(request, CompletionRequest)
    for shot in shots:
        assert shot["instruction"] in request.prompt and shot["output"] in request.prompt


def test_quality_changes_show_as_a_text_and_the_table_filters_on_the_verdict(
    page: tuple[RunStore, Path],
) -> None:
    _, folder = page
    improved = conversations(folder)[2]
    quality = next(event for event in improved["lineage"] if event["step"] == "quality")
    assert quality["note"].startswith("improved") and quality["text"]["output"] == IMPROVED
    assert improved["failed"] == [] and improved["annotation"]["domain"] == "madlavning"
    assert improved["messages"][2] == {"role": "user", "content": FOLLOWUP[0]}
    meta, table = data(folder, "meta"), data(folder, "table")
    assert (meta["conversations"], meta["filtered"], meta["removed"]) == (4, 1, 0)
    reasons = meta["facets"]["reason"]
    for row, item in enumerate(conversations(folder)):
        assert {reasons[bit] for bit in range(len(reasons)) if table["failed"][row] >> bit & 1} == (
            set(item["failed"])
        )
    assert table["generation"] == [1, 0, 0, 0] and table["turns"] == [2, 2, 2, 2]
    assert table["operation"][0] == meta["facets"]["operation"].index("add_constraints")
    assert table["operation"][1:] == [-1, -1, -1]
    assert meta["facets"]["domain"] == ["madlavning"] and table["quality"] == [4, 4, 4, 4]
    rows = data(folder, "rows-0000")
    assert rows["id"] == [item["id"] for item in conversations(folder)]
    assert FOLLOWUP[0] in rows["user"][0] and rows["first"][0] == EVOLVED


def test_every_rejection_of_every_step_is_listed_with_its_record_or_output(
    page: tuple[RunStore, Path],
) -> None:
    _, folder = page
    meta = data(folder, "meta")["rejections"]
    by_step = {step["step"]: step for step in meta["steps"]}
    assert meta["total"] == 3
    assert by_step["generation-01"]["reasons"] == {"near_duplicate": 1, "no_tasks": 1}
    assert by_step["evolution-01"]["reasons"] == {"not_harder": 1}
    assert by_step["grammar"]["count"] == 0 and by_step["grammar"]["chunks"] == []
    items = data(folder, by_step["generation-01"]["chunks"][0])["items"]
    shard, merge = items  # a shard's rejections come before its merge's
    assert (shard["shard"], shard["reason"], shard["raw"], shard["record"]) == (
        0, "no_tasks", "???", None,
    )  # fmt: skip
    assert merge["shard"] is None and merge["record"]["instruction"] == REJECTED
    assert "ROUGE-L" in merge["detail"]


def test_files_are_split_so_the_page_loads_only_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browse, "ROWS_CHUNK", 3)
    monkeypatch.setattr(browse, "CONV_CHUNK", 2)
    store, config = lineage_run(tmp_path)
    folder = write_browse(store, config, log=lambda _: None).index.parent
    meta = data(folder, "meta")
    assert (meta["rows_chunk"], meta["conv_chunk"]) == (3, 2)
    assert [len(data(folder, f"rows-{k:04d}")["id"]) for k in (0, 1)] == [3, 1]
    assert [data(folder, f"conv-{k:04d}")["start"] for k in (0, 1)] == [0, 2]
    assert not (folder / "data" / "rows-0002.js").exists()
    assert not (folder / "data" / "conv-0002.js").exists()


def test_the_map_places_every_instruction_coloured_by_domain(page: tuple[RunStore, Path]) -> None:
    _, folder = page
    meta, points = data(folder, "meta")["map"], data(folder, "map")
    assert (meta["points"], meta["total"], meta["sampled"]) == (4, 4, False)
    assert meta["colour_by"] == "domain" and meta["labels"] == ["madlavning"]
    assert sorted(points["row"]) == [0, 1, 2, 3] and set(points["colour"]) == {0}
    assert points["text"][points["row"].index(0)] == EVOLVED


def test_a_new_page_replaces_the_old_folder_whole(page: tuple[RunStore, Path]) -> None:
    store, folder = page
    stale = folder / "data" / "conv-0099.js"
    stale.write_text("from an older, larger run", "utf-8")
    write_browse(store, run_config(store), log=lambda _: None)
    assert not stale.exists() and (folder / "data" / "meta.js").is_file()
    assert sorted(path.name for path in folder.parent.glob(".browse*")) == []


def test_a_failed_build_leaves_the_old_page_as_it_was(
    page: tuple[RunStore, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, folder = page
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    def broken(*_: object) -> None:
        raise RuntimeError("the map failed")

    monkeypatch.setattr(browse, "layout", broken)
    monkeypatch.setattr(browse, "CONV_CHUNK", 1)  # a build in place would leave conv-0001.js
    with pytest.raises(RuntimeError, match="the map failed"):
        write_browse(store, run_config(store), log=lambda _: None)
    after = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert after == before
    assert sorted(path.name for path in folder.parent.glob(".browse*")) == []


def test_publish_writes_the_page_and_the_map_into_the_card(tmp_path: Path) -> None:
    store, config = lineage_run(tmp_path)
    published = publish(store, config)
    assert published.browse.index == store.root / "browse" / "index.html"
    assert (store.root / MAP_PLOT).read_bytes().startswith(b"\x89PNG")
    card = published.card.read_text("utf-8")
    section = card.split("## Map of the tasks\n")[1].split("\n## ")[0]
    assert f"![Map of the tasks]({MAP_PLOT})" in section
    assert "all 4 instructions" in section and "coloured by domain" in section
    assert "`browse/index.html`" in section


def test_the_browse_command_writes_the_page_and_says_so(tmp_path: Path) -> None:
    store, _ = lineage_run(tmp_path)
    result = laerebogen("browse", "--run", str(store.root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    index = tmp_path / "out" / "browse" / "index.html"
    assert f"-> {index}" in result.stdout and "4 conversations, 3 rejections" in result.stdout
    nothing = laerebogen("browse", "--run", str(tmp_path / "nothing"))
    assert nothing.returncode != 0 and nothing.stderr.count("\n") == 1
    assert "not a run directory" in nothing.stderr
