"""The report (stats.json and plots) and the dataset card of a finished run, on real files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from matplotlib.image import imread

from laerebogen.config.loading import load_config
from laerebogen.errors import StoreError
from laerebogen.outputs.card import made_with_gemma, render_card, size_category
from laerebogen.outputs.export import export
from laerebogen.outputs.publish import publish
from laerebogen.outputs.report import (
    PANELS,
    PLOTS,
    STATS_FILE,
    collect,
    distribution,
    figures,
    left_out_by_target,
    write_report,
)
from laerebogen.pipeline.plan import MergeResult, final_records, merge_file, read_plan
from laerebogen.records import Annotation, BlockCheck, Example, Message, Passage, Step
from laerebogen.store.run_dir import RunStore
from tests.support.finished_run import (
    GOOD_ANNOTATION,
    GOOD_ANSWER,
    OVERRIDES,
    PASSING,
    final_conversations,
    finished_run,
    read_lines,
)
from tests.support.records import finish_shard

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def with_duplicates(store: RunStore) -> None:
    """Say that generation-01's merge removed 2 near-duplicates of 6 records."""
    result = MergeResult("generation-01", 6, 4, {"near_duplicate": 2}, "followups", 0.1)
    store.write_state(merge_file("generation-01"), result)


def card_header(card: str) -> dict:
    """The YAML front matter of a card."""
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# ---------------------------------------------------------------- stats and plots


CODE_CHECKS = [
    (BlockCheck(1, 0, "python", "ok"),),
    (),
    (
        BlockCheck(1, 0, "python", "exception", "NameError"),
        BlockCheck(1, 1, "sql", "syntax_error", 'near "SELEC": syntax error'),
        BlockCheck(1, 2, "python", "exception", "NameError"),
    ),
    (),
    (BlockCheck(1, 0, "python", "not_verifiable", "needs input"),),
    (BlockCheck(3, 0, "bash", "not_checked"),),  # a passing conversation: not run, not failed
]


def test_stats_hold_the_runs_real_figures(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, code_checks=CODE_CHECKS)
    with_duplicates(store)
    report = write_report(store, config)
    stats = json.loads((tmp_path / "run" / STATS_FILE).read_bytes())
    assert report.stats_path == tmp_path / "run" / STATS_FILE
    assert (stats["conversations"], stats["filtered"], stats["seed_tasks"]) == (6, 2, 176)
    # Each threshold's count of conversations failing it (conversation 1 fails two).
    assert stats["failed_filters"] == {
        "min_lix": 1,
        "max_lix": 1,
        "min_assistant_words": 1,
        "min_danish_confidence": 2,
        "harmful": 0,
        "min_quality": 0,
        "unannotated": 0,
        "code_syntax_error": 1,
        "code_exception": 1,
        "code_timeout": 0,
        "code_resource_limit": 0,
    }
    assert stats["filters"] == config.export.thresholds()
    assert stats["code_check"] == {
        "conversations_with_code": 4,
        "blocks": 6,
        "outcomes": {
            "ok": 1,
            "syntax_error": 1,
            "exception": 2,
            "timeout": 0,
            "resource_limit": 0,
            "not_verifiable": 1,
            "not_checked": 1,
        },
        "languages": {
            "python": {"ok": 1, "exception": 2, "not_verifiable": 1},
            "bash": {"not_checked": 1},
            "sql": {"syntax_error": 1},
        },
        "details": {
            "syntax_error": {'near "SELEC": syntax error': 1},
            "exception": {"NameError": 2},
            "not_verifiable": {"needs input": 1},
        },
        "sandboxes": {},  # the records were not made by the step, so carry none of its notes
    }
    assert stats["turns"] == {"1": 2, "2": 4}
    assert stats["origins"] == {"evolved": 1, "self-instruct": 5}
    assert stats["generations"] == {"0": 5, "2": 1} and stats["operations"] == {"deepen": 1}
    # Every message counted once per role; one conversation was never judged for language.
    assert stats["words"]["user"]["count"] == stats["words"]["assistant"]["count"] == 10
    assert stats["danish_confidence"]["count"] == 5 and stats["lix"]["count"] == 6
    assert stats["danish_confidence"]["minimum"] == 0.31
    # The funnel per step, and the merges' duplicates over the run.
    assert [(s["step"], s["records_in"], s["kept"]) for s in stats["steps"]] == [
        ("generation-01", 4, 4),
        ("followups", 4, 6),
        ("code_check", 6, 6),
        ("annotate", 6, 6),
    ]
    assert stats["steps"][0]["merge_rejected"] == {"near_duplicate": 2}
    assert stats["dedup"] == {"near_duplicate": 2, "duplicate_id": 0}
    assert stats["left_out_by_target"] == {"generation-01": 0}  # 4 kept, target 24
    assert set(stats["plots"]) == set(PLOTS) and stats["omitted"] == []


def test_every_plot_is_a_png_image_beside_stats_json(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, code_checks=CODE_CHECKS)
    report = write_report(store, config)
    assert set(report.plot_paths) == set(PLOTS)
    for name, path in report.plot_paths.items():
        assert path == tmp_path / "run" / report.stats.plots[name]
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        height, width, _ = imread(path).shape
        assert width >= 500 and height >= 250, name


def test_the_report_is_deterministic(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    first = write_report(store, config, tmp_path / "first")
    second = write_report(store, config, tmp_path / "second")
    files = [first.stats_path, *first.plot_paths.values()]
    for path in files:
        assert (
            path.read_bytes()
            == (tmp_path / "second" / path.relative_to(tmp_path / "first")).read_bytes()
        )
    assert second.stats == first.stats


def test_an_empty_dataset_gets_stats_and_only_the_plots_with_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(*finished_run(tmp_path, name="full"), out)
    store, config = finished_run(tmp_path, [], name="empty")
    report = write_report(store, config, out)
    assert report.stats.conversations == report.stats.filtered == 0
    assert report.stats.lix == distribution([])
    # Only the funnel has data; the plots the full run drew into out are gone.
    assert report.stats.omitted == [name for name in PANELS if name != "funnel"]
    assert list(report.stats.plots) == list(report.plot_paths) == ["funnel"]
    assert [path.name for path in (out / "plots").iterdir()] == ["funnel.png"]
    assert report.plot_paths["funnel"].read_bytes().startswith(PNG_SIGNATURE)
    card = render_card(report.stats, config, complete="c.jsonl", filtered="f.jsonl", example=())
    assert 'No "LIX of the answers" panel: the run has no conversations.' in card
    assert "](plots/funnel.png)" in card and "](plots/lix.png)" not in card


def test_count_axes_have_integer_ticks(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, code_checks=CODE_CHECKS)
    stats, samples = collect(store, config, final_records(store, config))
    checked = []
    for name, figure in figures(stats, samples).items():
        for axes in figure.axes:
            for axis, label in ((axes.xaxis, axes.get_xlabel()), (axes.yaxis, axes.get_ylabel())):
                if label in ("conversations", "messages", "records", "code blocks"):
                    ticks = axis.get_ticklocs()
                    assert len(ticks) > 1 and all(tick == round(tick) for tick in ticks), name
                    checked.append(axes.get_title())
    assert len(checked) == len(PANELS)  # every panel has one count axis


def test_a_panel_without_data_is_left_out_and_the_card_says_so(tmp_path: Path) -> None:
    not_evolved = [r for r in final_conversations() if r.provenance.operation is None]
    store, config = finished_run(tmp_path, not_evolved)
    published = publish(store, config)
    assert published.report.stats.omitted == ["operations", "code"]  # no code_check step
    # The evolution plot keeps its generations panel alone: half as wide as with both.
    _, width, _ = imread(published.report.plot_paths["evolution"]).shape
    assert width == 550
    card = published.card.read_text(encoding="utf-8")
    assert "](plots/evolution.png)" in card
    assert 'No "Evolution operation" panel: the run has no evolved conversations.' in card


def test_the_funnel_shows_what_the_generation_target_left_out(tmp_path: Path) -> None:
    # Generation kept 4 records, the target takes 3 into the follow-ups.
    store, config = finished_run(tmp_path, overrides=["generation.target=3"])
    published = publish(store, config)
    assert published.report.stats.left_out_by_target == {"generation-01": 1}
    card = published.card.read_text(encoding="utf-8")
    assert "| kept | left out by the target |" in card
    assert "| generation-01 | 4 | 0 | - | - | 4 | 1 |" in card
    assert "| followups | 3 | 0 | - | - | 6 | - |" in card
    assert "4 kept after screening and deduplication (target 3; 1 left out by the target)." in card
    stats, samples = collect(store, config, final_records(store, config))
    legend = figures(stats, samples)["funnel"].axes[0].get_legend_handles_labels()[1]
    assert legend == ["in", "out of the shards", "kept by the merge", "left out by the target"]
    # Counted from the run's steps, not from the config's target.
    card = publish(store, config).card.read_text(encoding="utf-8")
    assert "| generation-01 | 4 | 0 | - | - | 4 | 1 |" in card


def test_the_target_cuts_the_last_rounds_records_of_each_source(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    first, followups, _ = collect(store, config, [])[0].steps
    second = msgspec.structs.replace(first, step="generation-02", kept=5)
    magpie = msgspec.structs.replace(first, step="magpie-01", stage="magpie", kept=4)
    steps = [first, magpie, second, followups]
    # 4 + 5 kept for a target of 7: the last round's 2 are left out; Magpie had 4 for 3.
    assert left_out_by_target(steps, {"self_instruct": 7, "magpie": 3}) == {
        "generation-01": 0, "magpie-01": 1, "generation-02": 2,
    }  # fmt: skip
    assert left_out_by_target([first, second], {"self_instruct": 3}) == {
        "generation-01": 1, "generation-02": 5,
    }  # fmt: skip
    assert left_out_by_target([first], {"self_instruct": 24}) == {"generation-01": 0}


def test_distribution_interpolates_percentiles() -> None:
    summary = distribution(list(range(1, 101)))
    assert (summary.count, summary.minimum, summary.maximum) == (100, 1.0, 100.0)
    assert (summary.p10, summary.median, summary.p90, summary.mean) == (10.9, 50.5, 90.1, 50.5)
    assert distribution([7]).median == distribution([7]).p90 == 7.0


def test_report_refuses_an_unfinished_run(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    (tmp_path / "run" / merge_file("followups")).unlink()
    with pytest.raises(StoreError, match="followups is not merged"):
        write_report(store, config)
    assert not (tmp_path / "run" / STATS_FILE).exists()


def test_report_command_writes_into_out(tmp_path: Path) -> None:
    finished_run(tmp_path, code_checks=CODE_CHECKS)
    out = tmp_path / "report"
    completed = subprocess.run(
        [sys.executable, "-m", "laerebogen", "report", "--run", str(tmp_path / "run"),
         "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "conversations: 6 (2 in the filtered version)" in completed.stdout
    assert str(out / STATS_FILE) in completed.stdout
    assert sorted(path.name for path in (out / "plots").iterdir()) == sorted(
        f"{name}.png" for name in PLOTS
    )


# ---------------------------------------------------------------- the card


def test_publish_writes_a_card_that_datasets_can_load(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    published = publish(store, config)
    run = tmp_path / "run"
    assert published.card == run / "README.md"
    card = published.card.read_text(encoding="utf-8")
    header = card_header(card)
    assert header["language"] == ["da"]
    assert header["task_categories"] == ["text-generation"]
    assert header["size_categories"] == ["n<1K"]
    configs = {entry["config_name"]: entry for entry in header["configs"]}
    assert configs["filtered"]["data_files"] == [
        {"split": "train", "path": "dataset.filtered.jsonl"}
    ]
    assert configs["complete"]["data_files"][0]["path"] == "dataset.jsonl"
    # The Hub's loader reads the card's configs: both versions load with their rows.
    filtered = load_dataset(str(run), "filtered", split="train")
    complete = load_dataset(str(run), "complete", split="train")
    assert (filtered.num_rows, complete.num_rows) == (len(PASSING), 6)
    assert filtered[0]["messages"] == read_lines(run / "dataset.filtered.jsonl")[0]["messages"]


def test_the_card_tells_this_runs_figures(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, code_checks=CODE_CHECKS)
    with_duplicates(store)
    card = publish(store, config).card.read_text(encoding="utf-8")
    assert "**6** conversations (**2** in the filtered version)" in card
    assert "from 176 hand-written Danish seed tasks" in card
    # Funnel rows: step, in, out of the shards (none written here), rejections, kept, left
    # out by the target (base generation only).
    assert "| generation-01 | 4 | 0 | - | near_duplicate 2 | 4 | 0 |" in card
    assert "| followups | 4 | 0 | - | - | 6 | - |" in card
    assert "2 near-duplicates and 0 duplicate ids removed" in card
    # How it was made: what this run did, step by step, not what the recipe intends.
    assert "prompts of 3 random seeds in 1 round asked the pretrained model" in card
    assert "4 kept after screening and deduplication (target 24)." in card
    assert "3. **Grammar correction** by the instruction-tuned model: not run." in card
    assert "5. **Evol-Instruct**: not run." in card
    assert "per conversation; conversations by turns added: 1 turn: 4, 0 turns: 2." in card
    assert "on CPUs (no GPUs)" in card and "GPU-hours" not in card
    # Models and sampling per kind of request (the tiny config: follow-ups only, one model).
    assert "| followups | answers | `tiny` | 1.0 | 1.0 | 0.0 | 1.0 | 64 |" in card
    assert "| grammar |" not in card  # disabled in this recipe
    # The thresholds with why, and how many conversations each removes.
    assert "- `max_lix` = 60: LIX of the answers at most 60:" in card
    assert "(2 conversations fail it)" in card
    assert "| deepen | 1 |" in card and " panel: the run has no " not in card
    # The example is the filtered version's first conversation, and every plot is embedded.
    first = final_conversations()[PASSING[0]].conversation()
    assert json.dumps(first[0].content, ensure_ascii=False) in card
    for name in PLOTS:
        assert f"](plots/{name}.png)" in card
        assert (tmp_path / "run" / "plots" / f"{name}.png").is_file()


def test_the_card_shows_each_models_share_of_each_step(tmp_path: Path) -> None:
    mixture = [
        "models.other={ path = 'tiny-qwen2' }",
        "followups.model={ instruct = 0.5, other = 0.5 }",
        "followups.records_per_shard=1",
    ]
    store, config = finished_run(tmp_path, overrides=mixture)
    plan = read_plan(store, "followups")
    assert plan is not None and plan.models.count("other") == 1 and plan.shards == 4
    for index, model in enumerate(plan.models):  # the other model fails one of its 2 tries
        calls = {"answer": 1, "user": 2} if model == "other" else {"answer": 1, "user": 1}
        reasons = ["empty"] if model == "other" else []
        finish_shard(store, "followups", index, 1, reasons, completion_tokens=7, requests=calls)
    card = publish(store, config).card.read_text(encoding="utf-8")
    assert "| followups | answers | `tiny` 50%, `tiny-qwen2` 50% | 1.0 |" in card
    assert (
        "| followups | `tiny` (instruct) | 75% | 3 | 3 | answer 3 (75%), user 3 (60%) | 21 | - |"
        in card
    )
    other = "| followups | `tiny-qwen2` (other) | 25% | 1 | 1 | answer 1 (25%), user 2 (40%) |"
    assert f"{other} 7 | empty 1 |" in card
    assert "| `tiny-qwen2` (other) | 1 | 1 | 1 | 0 | 7 | empty 1 |" in card
    assert "made by laerebogen 0.1.0 with `tiny` and `tiny-qwen2` from" in card
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["models"]["other"]["steps"]["followups"]["rejected"] == {"empty": 1}


def test_the_cards_thresholds_follow_the_config(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    card = publish(store, config).card.read_text(encoding="utf-8")
    assert "an input of at most 400 words" in card
    assert "the built-in Danish list (billede, foto, graf, diagram" in card
    changes = [
        "export.max_lix=110",
        "filters.max_input_words=250",
        "filters.banned_words=['kamera', 'tryk på']",
    ]
    config = load_config("tiny", [*OVERRIDES, *changes])
    card = publish(store, config).card.read_text(encoding="utf-8")
    assert "- `max_lix` = 110: LIX of the answers at most 110:" in card
    assert "**6** conversations (**3** in the filtered version)" in card
    assert "an input of at most 250 words" in card
    assert "the run's own list (kamera, tryk på)" in card
    assert "a pretrained model given each chat as a plain transcript" not in card
    assert "they are noise" not in card
    pretrained = load_config(
        "tiny",
        [*OVERRIDES, "models.instruct.chat_template='transcript'", "annotate.enabled=true"],
    )
    card = publish(store, pretrained).card.read_text(encoding="utf-8")
    assert "The instruction-tuned role was played by `tiny`, a pretrained model" in card
    assert "A pretrained model made these judgements (see Limitations): they are noise." in card


def test_gemma_made_data_carries_the_gemma_terms(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    card = card_header(publish(store, config).card.read_text(encoding="utf-8"))
    assert card["license"] == "other" and "gemma" not in card["license_name"]
    gemma = load_config(
        "tiny", [*OVERRIDES, "models.base.path='gemma-3-27b-pt'", "models.instruct.path='x'"]
    )
    assert made_with_gemma(gemma)
    text = publish(store, gemma).card.read_text(encoding="utf-8")
    header = card_header(text)
    assert header["license_name"] == "gemma-terms-of-use"
    assert header["license_link"] == "https://ai.google.dev/gemma/terms"
    assert "[Gemma Terms of Use](https://ai.google.dev/gemma/terms)" in text
    # A Gemma model under another directory name is recognised by its config.json.
    model = tmp_path / "models" / "my-model"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "gemma3_text"}')
    renamed = load_config(
        "tiny",
        [*OVERRIDES, f"model_dir={str(tmp_path / 'models')!r}", "models.base.path='my-model'"],
    )
    assert made_with_gemma(renamed)


def test_size_categories_follow_the_hub_buckets() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 52_000, 250_000, 10**7)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "n>10M",
    ]  # fmt: skip


def test_publish_outside_the_run_keeps_everything_together(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    out = tmp_path / "release" / "laerebogen.jsonl"
    published = publish(store, config, out)
    assert published.card == out.parent / "README.md"
    names = sorted(path.name for path in out.parent.iterdir())
    assert names == [
        "README.md", "browse", "laerebogen.filtered.jsonl", "laerebogen.jsonl", "plots",
        "stats.json",
    ]  # fmt: skip
    assert (out.parent / "plots" / "map.png").is_file()
    assert (out.parent / "browse" / "index.html").is_file()
    assert "path: laerebogen.filtered.jsonl" in published.card.read_text(encoding="utf-8")
    assert not (tmp_path / "run" / "README.md").exists()
    assert not (tmp_path / "run" / "browse").exists()


def test_the_driver_ends_by_printing_dataset_card_and_plots(tmp_path: Path) -> None:
    from laerebogen.commands.dataset import run_dataset

    _, config = finished_run(tmp_path)
    out = io.StringIO()
    path = run_dataset(config, tmp_path / "run", "debug", out=out)
    text = out.getvalue()
    assert path == tmp_path / "run" / "dataset.jsonl"
    assert f"card: {tmp_path / 'run' / 'README.md'}" in text
    assert f"complete: 6 conversations -> {path}" in text
    assert str(tmp_path / "run" / "plots" / "funnel.png") in text
    # Every step was merged already: the driver says so and that it ran none.
    assert "every step was done already: the run is finished" in text
    assert f"{tmp_path / 'run'}: 0 steps run in 0 min" in text


# ---------------------------------------------------------------- annotation


HARMFUL_QUESTION = "Hvordan gør jeg min nabo fortræd uden at blive opdaget?"
HARMFUL_ANSWER = GOOD_ANSWER.replace("Æbler", "Naboens planter")


def test_a_conversation_judged_harmful_is_counted_but_never_shown(tmp_path: Path) -> None:
    records = final_conversations()
    harmful = records[PASSING[0]]
    records[PASSING[0]] = msgspec.structs.replace(
        harmful,
        messages=(Message("user", HARMFUL_QUESTION), Message("assistant", HARMFUL_ANSWER)),
    )
    annotations = [GOOD_ANNOTATION] * len(records)
    annotations[PASSING[0]] = msgspec.structs.replace(GOOD_ANNOTATION, harm="vold", quality=5)
    annotations[1] = None  # no usable reply
    store, config = finished_run(tmp_path, records, annotations=annotations)
    published = publish(store, config)
    card = published.card.read_text(encoding="utf-8")
    stats = json.loads(published.report.stats_path.read_bytes())
    # Out of the filtered version, counted by its reason; still in the complete version.
    assert published.export.filtered_count == len(PASSING) - 1
    filtered = (tmp_path / "run" / "dataset.filtered.jsonl").read_text(encoding="utf-8")
    assert HARMFUL_QUESTION not in filtered
    assert HARMFUL_QUESTION in (tmp_path / "run" / "dataset.jsonl").read_text(encoding="utf-8")
    assert stats["failed_filters"]["harmful"] == 1 and stats["failed_filters"]["unannotated"] == 1
    assert stats["annotation"]["harm"]["vold"] == 1 and stats["annotation"]["harm"]["nej"] == 4
    assert (stats["annotation"]["annotated"], stats["annotation"]["unannotated"]) == (5, 1)
    # The card counts it by category and quotes nothing of it, not even as its example.
    assert "| vold | 1 |" in card
    for text in (HARMFUL_QUESTION, "Naboens planter", "fortræd"):
        assert text not in card
    assert "- `harmful`: not judged harmful" in card and "(1 conversations fail it)" in card


def test_the_annotation_has_its_tables_plot_and_stats(tmp_path: Path) -> None:
    annotations = [
        Annotation(domain, task, difficulty, quality, "Grund.", "nej")
        for domain, task, difficulty, quality in [
            ("mad", "råd", 1, 5),
            ("mad", "råd", 2, 4),
            ("jura", "faktaspørgsmål", 3, 3),
            ("programmering", "kode", 5, 2),
            ("mad", "andet", 2, 1),
            ("jura", "råd", 4, 4),
        ]
    ]
    store, config = finished_run(tmp_path, annotations=annotations)
    published = publish(store, config)
    stats = published.report.stats
    assert stats.annotation is not None
    assert stats.annotation.domains["mad"] == 3 and stats.annotation.domains["historie"] == 0
    assert list(stats.annotation.domains)[:3] == ["sundhed", "programmering", "matematik"]
    assert stats.annotation.task_types["råd"] == 3
    assert stats.annotation.difficulty == {"1": 1, "2": 2, "3": 1, "4": 1, "5": 1}
    assert stats.annotation.quality == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 1}
    assert stats.annotation_rules == {"harmful": 1.0, "min_quality": 3.0, "unannotated": 1.0}
    # Two passing conversations by score; the one of quality 1 fails min_quality too.
    assert stats.failed_filters["min_quality"] == 2
    card = published.card.read_text(encoding="utf-8")
    assert "## Annotation" in card and "| mad | 3 |" in card and "| 4 | 1 | 2 |" in card
    assert "8. **Annotation**: the instruction-tuned model judged every conversation" in card
    assert "harm) in one constrained JSON reply, messages cut to 1200 characters" in card
    free = msgspec.structs.replace(
        config, annotate=msgspec.structs.replace(config.annotate, constrained=False)
    )
    assert "harm) in one JSON reply" in publish(store, free).card.read_text(encoding="utf-8")
    assert "| annotate | judgements | `tiny` |" in card
    assert "](plots/annotation.png)" in card
    figure = figures(stats, collect(store, config, final_records(store, config))[1])["annotation"]
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["Domain", "Task type", "Difficulty (1-5)", "Quality of the answers (1-5)"]
    heights = [bar.get_height() for bar in figure.axes[2].patches]
    assert heights == [1, 2, 1, 1, 1]


def test_a_run_without_annotation_says_so(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, annotate=False)
    published = publish(store, config)
    card = published.card.read_text(encoding="utf-8")
    assert published.report.stats.annotation is None
    assert "8. **Annotation**: not run." in card and "## Annotation" not in card
    assert "annotation" not in published.report.stats.plots
    assert "- `harmful`" not in card and "every rule on their annotation" not in card


def test_the_code_check_has_its_table_plot_and_rules_in_the_card(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, code_checks=CODE_CHECKS)
    card = publish(store, config).card.read_text(encoding="utf-8")
    assert "7. **Code check**: the Python and SQL blocks of every answer were run" in card
    assert "4 conversations have code blocks (6 blocks, 1 ran without error)" in card
    header = "| language | ok | syntax_error | exception | timeout | resource_limit | "
    assert header + "not_verifiable | not_checked | blocks |" in card
    assert "| python | 1 | 0 | 2 | 0 | 0 | 1 | 0 | 4 |" in card
    assert "| sql | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 1 |" in card
    assert "- exception: NameError 2" in card
    assert "](plots/code.png)" in card
    assert "limited to 5 s per block, 5 CPU seconds and 1024 MiB per message" in card
    assert "- `code_exception`: no code block that raises an exception" in card
    assert "(1 conversations fail it)" in card.split("`code_exception`")[1].split("\n")[0]
    assert "and whose code blocks do not fail" in card


def test_a_run_without_the_code_check_says_so(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    published = publish(store, config)
    card = published.card.read_text(encoding="utf-8")
    assert published.report.stats.code_check is None
    assert published.report.stats.code_rules == {}
    assert "7. **Code check**: not run." in card and "## Code check" not in card
    assert "code_exception" not in card


SOURCES = [
    "sources.shares={self_instruct = 0.5, magpie = 0.25, grounded = 0.25}",
    'sources.grounded.corpus="packaged:corpus_da"',
]


def with_source(record: Example, source: str, note: str = "") -> Example:
    """``record`` from ``source``: a grounded one rests on a passage, and the base source's
    step says what made it."""
    stage = {"magpie": "magpie", "grounded": "grounded"}.get(source, "generation")
    steps = (Step(stage, 1, "tiny", note=note), *record.provenance.steps[1:])
    passage = Passage("jul.txt", "jul#2") if source == "grounded" else None
    provenance = msgspec.structs.replace(
        record.provenance, source=source, passage=passage, steps=steps
    )
    return msgspec.structs.replace(record, provenance=provenance)


def test_each_source_is_counted_in_stats_card_and_metadata(tmp_path: Path) -> None:
    records = final_conversations()
    made = [
        ("self_instruct", ""), ("magpie", "steering user_start"),
        ("grounded", "hvem reading"), ("grounded", "hvorfor closed_book"),
        ("import:eksempel", ""), ("magpie", "steering user_start"),
    ]  # fmt: skip
    records = [with_source(r, *source) for r, source in zip(records, made, strict=True)]
    store, config = finished_run(tmp_path, records, overrides=SOURCES)
    steps = [status.step for status in collect(store, config, [])[0].steps]
    assert steps[:3] == ["generation-01", "magpie-01", "grounded-01"]
    published = publish(store, config)
    stats = json.loads(published.report.stats_path.read_text(encoding="utf-8"))
    # Filtered: conversations 0 (self_instruct) and 5 (magpie) pass.
    assert stats["sources"] == {
        "grounded": {"conversations": 2, "filtered": 0},
        "magpie": {"conversations": 2, "filtered": 1},
        "import:eksempel": {"conversations": 1, "filtered": 0},
        "self_instruct": {"conversations": 1, "filtered": 1},
    }
    assert list(stats["sources"]) == ["grounded", "magpie", "import:eksempel", "self_instruct"]
    assert stats["grounded_questions"] == {"hvem": {"reading": 1}, "hvorfor": {"closed_book": 1}}
    assert stats["magpie_steering"] == {"user_start": 2}
    card = published.card.read_text(encoding="utf-8")
    assert "### Sources" in card
    assert "| `magpie` | Magpie: written by the instruction-tuned model from its bare chat " in card
    assert "| `import:eksempel` | imported | 1 | 0 | 16.7 % |" in card
    assert "| hvorfor | 0 | 1 |" in card
    assert "   - **Magpie**: 9 prompt slots in 1 round" in card  # the run's 6 x 1.5 slots
    assert "   - **Grounded questions**: 9 passages of the corpus `corpus_da` in 1 round" in card
    assert "| magpie | user messages | `tiny` |" in card
    # The metadata says where each conversation's task came from, and the passage.
    out = tmp_path / "export" / "data.jsonl"
    export(store, config, out, with_metadata=True, parquet=True)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["source"] for line in lines] == [source for source, _ in made]
    assert lines[2]["passage"] == {"file": "jul.txt", "id": "jul#2"} and lines[0]["passage"] is None
    table = pq.read_table(out.with_suffix(".parquet"))
    assert table.column("source").to_pylist() == [source for source, _ in made]
    assert table.column("passage").to_pylist()[2] == {"file": "jul.txt", "id": "jul#2"}
