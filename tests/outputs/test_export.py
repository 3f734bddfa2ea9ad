"""LIX and conversation scores, and the export: lines, metadata, filtering, files, Parquet.

LIX values are computed by hand in the comments. The export runs on a run directory built
with the store (planned steps, hand-written merged sets and merge results), so no model is
needed; the files are loaded back with ``datasets`` as a user would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import pytest
from datasets import load_dataset

from laerebogen.config.schema import Export
from laerebogen.errors import InvariantError, LaerebogenError, StoreError
from laerebogen.filtering.readability import (
    conversation_scores,
    count_text,
    count_texts,
    lix,
    word_count,
)
from laerebogen.outputs.export import (
    FILTER_REASONS,
    Judged,
    annotation_rules,
    code_rules,
    export,
    export_scores,
    failed_filters,
    filter_reasons,
    judge_filtered,
    over_domain_share,
)
from laerebogen.pipeline.plan import merge_file
from laerebogen.records import Annotation, BlockCheck
from tests.support.finished_run import (
    GOOD_ANNOTATION,
    GOOD_ANSWER,
    PASSING,
    conversation,
    final_conversations,
    finished_run,
    read_lines,
)
from tests.support.records import make_example

# ---------------------------------------------------------------- LIX


def test_lix_of_short_danish_sentences() -> None:
    # Jeg kan lide æbler | De er søde og sunde: 9 words, 2 sentences, none over 6 letters.
    assert lix("Jeg kan lide æbler. De er søde og sunde!") == 9 / 2 + 0 == 4.5


def test_lix_counts_words_of_more_than_six_letters_as_long() -> None:
    # 10 words, 3 sentences; long: Sundhedsstyrelsen (17), anbefaler (9), grøntsager (10),
    # Hvorfor (7), indeholder (10), vitaminer (9) = 6. LIX = 10/3 + 100 * 6/10 = 63.33.
    text = (
        "Sundhedsstyrelsen anbefaler grøntsager hver dag. Hvorfor? Fordi de indeholder vitaminer."
    )
    assert count_text(text) == count_texts([text])
    assert (count_text(text).words, count_text(text).sentences) == (10, 3)
    assert count_text(text).long_words == 6
    assert lix(text) == pytest.approx(10 / 3 + 60)
    # Exactly six letters is not long (hunden, æblets), seven is (hundene); æ/ø/å are letters.
    assert count_text("hunden æblets hundene blåbær blåbærene").long_words == 2


def test_line_breaks_end_sentences_and_list_numbers_are_not_words() -> None:
    # Ingredienser | Mel | Sukker | Bland det hele: | rør godt -> 8 words, 5 sentences, 1 long
    # (Ingredienser, 12; Sukker has 6). "1." and "2." and the blank line add nothing.
    # LIX = 8/5 + 100 * 1/8 = 14.1.
    text = "Ingredienser\n1. Mel\n2. Sukker\n\nBland det hele: rør godt"
    assert count_text(text).words == 8 and count_text(text).sentences == 5
    assert lix(text) == pytest.approx(14.1)


def test_hyphenated_words_numbers_and_punctuation_runs() -> None:
    # EU-landene (9 letters, long) brugte 600 mio. | kr. | i 2023. -> words EU-landene, brugte,
    # mio, kr, i = 5 (numbers are not words), 3 sentences (abbreviations end one), 1 long.
    # LIX = 5/3 + 100 * 1/5 = 21.67.
    assert lix("EU-landene brugte 600 mio. kr. i 2023.") == pytest.approx(5 / 3 + 20)
    # "?!" and "..." are one end each; a colon ends a sentence, and "!" before a quote does.
    assert lix("Hvad?! Nej... Jo.") == 3 / 3 + 0 == 1.0
    assert count_text('Han sagde: "Kom nu!" og gik.').sentences == 3
    # Decimals, clock times and URLs do not end a sentence; "kl." and the text's end do.
    # Se https www dr dk nyheder kl | og -> 8 words, 2 sentences, 1 long (nyheder): 4 + 12.5.
    assert lix("Se https://www.dr.dk/nyheder kl. 10:30 og 3.5 %") == pytest.approx(16.5)


def test_text_without_words_has_lix_zero() -> None:
    assert lix("") == 0.0
    assert lix("123 ... !\n\n- 4,5") == 0.0
    assert word_count("") == 0 and word_count("Æ ø å") == 3


def test_conversation_scores_count_per_role_and_lix_over_the_answers() -> None:
    example = conversation(
        "Hvad er sundt?",  # 3 words
        "Jeg kan lide æbler",  # 4 words, no full stop: the message's end ends the sentence
        "Hvorfor det?",  # 2 words
        "Sundhedsstyrelsen anbefaler frugt.",  # 3 words, 2 long
        scores={"danish_confidence": 0.91, "quality_good": 1.0},
    )
    # Answers together: 7 words, 2 sentences, 2 long -> 7/2 + 100 * 2/7 = 32.07.
    assert conversation_scores(example) == {
        "lix": 32.07,
        "user_words": 5,
        "assistant_words": 7,
        "turns": 2,
        "danish_confidence": 0.91,
    }
    # A record of one exchange without messages: its instruction and input are the question.
    single = make_example(0)
    scores = conversation_scores(single)
    assert scores["turns"] == 1 and "danish_confidence" not in scores
    assert scores["user_words"] == word_count(single.first_user_message())


def test_export_writes_one_conversation_per_line_in_the_run(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    result = export(store, config)
    path = result.complete
    assert path == tmp_path / "run" / "dataset.jsonl" and result.count == 6
    lines = read_lines(path)
    records = final_conversations()
    assert lines == [
        {"messages": [msgspec.to_builtins(m) for m in r.conversation()]} for r in records
    ]
    assert lines[0]["messages"][0] == {"role": "user", "content": "Hvorfor er æbler sunde?"}
    # UTF-8 as is, not \u escapes: æ, ø and å survive byte for byte.
    raw = path.read_bytes()
    assert "Blåbær er sunde".encode() in raw and b"\\u00e6" not in raw
    # The filtered version sits next to it; no temporary file is left behind.
    filtered = read_lines(tmp_path / "run" / "dataset.filtered.jsonl")
    assert filtered == [lines[index] for index in PASSING]
    assert not list((tmp_path / "run").glob(".*tmp"))
    assert not (tmp_path / "run" / "dataset.parquet").exists()


def test_metadata_carries_provenance_turns_and_every_score(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    result = export(store, config, with_metadata=True)
    lines = read_lines(result.complete)
    assert [line["id"] for line in lines] == [r.id for r in final_conversations()]
    first, evolved = lines[0], lines[5]
    assert list(first) == [
        "id",
        "messages",
        "origin",
        "source",
        "generation",
        "operation",
        "turns",
        "scores",
        "steps",
        "annotation",
    ]
    assert first["annotation"] == msgspec.to_builtins(GOOD_ANNOTATION)
    assert {line["source"] for line in lines} == {"self_instruct"}
    assert (first["origin"], first["generation"], first["operation"]) == ("self-instruct", 0, None)
    assert (evolved["origin"], evolved["generation"], evolved["operation"]) == (
        "evolved",
        2,
        "deepen",
    )
    assert first["turns"] == 2 and lines[1]["turns"] == 1
    # Each step with its model, sampling seed and shard: every key, on every line.
    assert first["steps"][1] == {
        "stage": "followups", "round": 0, "model": "tiny", "sampling_seed": 12, "shard": 1,
        "attempt": 0, "note": "",
    }  # fmt: skip
    # Answers: 29 + 13 words, 3 + 2 sentences, 9 + 1 long -> 42/5 + 100 * 10/42 = 32.21.
    assert first["scores"] == {
        "assistant_words": 42,
        "danish_confidence": 0.9346,  # rounded
        "lix": 32.21,
        "quality_good": 1.0,
        "turns": 2,
        "user_words": 10,
    }
    # Every line has every score, null where the record has none; never NaN.
    assert all(list(line["scores"]) == list(first["scores"]) for line in lines)
    assert lines[3]["scores"]["danish_confidence"] is None
    assert evolved["scores"]["quality_good"] is None
    assert b"NaN" not in result.complete.read_bytes()


def test_filtered_version_keeps_exactly_the_conversations_that_pass_every_threshold(
    tmp_path: Path,
) -> None:
    store, config = finished_run(tmp_path)
    result = export(store, config, with_metadata=True)
    assert (result.count, result.filtered_count) == (6, len(PASSING))
    lines = read_lines(result.complete)
    kept = read_lines(result.filtered)
    assert kept == [lines[index] for index in PASSING]
    filters = config.export.thresholds()
    reasons = [
        failed_filters({k: v for k, v in line["scores"].items() if v is not None}, filters)
        for line in lines
    ]
    assert reasons == [
        [],
        ["min_lix", "min_assistant_words"],
        ["min_danish_confidence"],
        ["min_danish_confidence"],
        ["max_lix"],
        [],
    ]
    # The thresholds and why: what a dataset card prints, with this run's values.
    assert set(filters) == set(FILTER_REASONS)
    assert filter_reasons(filters)["min_lix"].startswith("LIX of the answers at least 20:")


def test_the_thresholds_come_from_the_config(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    looser = msgspec.structs.replace(
        config, export=msgspec.structs.replace(config.export, min_danish_confidence=0.0)
    )
    result = export(store, looser, tmp_path / "out" / "loose.jsonl")
    # The low-confidence one comes back; the one never judged still lacks the score.
    assert result.filtered_count == len(PASSING) + 1
    reason = filter_reasons(looser.export.thresholds())["min_danish_confidence"]
    assert reason.startswith("Danish confidence at least 0:")


def test_filters_are_inclusive_bounds_and_a_missing_score_fails() -> None:
    scores = {"lix": 20.0, "assistant_words": 30, "danish_confidence": 0.5}
    filters = Export().thresholds()
    assert failed_filters(scores, filters) == []
    assert failed_filters({**scores, "lix": 60.01}, filters) == ["max_lix"]
    only_language = {"lix": 40.0, "assistant_words": 100}
    assert failed_filters(only_language, filters) == ["min_danish_confidence"]
    assert failed_filters({"lix": 70.0}, {"max_lix": 80.0}) == []
    assert failed_filters({}, {"max_lix": 80.0}) == ["max_lix"]
    with pytest.raises(ValueError, match="min_<score>"):
        failed_filters(scores, {"lix": 3.0})


def test_a_score_that_is_not_finite_stops_the_export(tmp_path: Path) -> None:
    broken = conversation("Hej?", GOOD_ANSWER, scores={"quality_good": math.nan}, index=9)
    with pytest.raises(InvariantError, match="quality_good is nan"):
        export_scores(broken)
    store, config = finished_run(tmp_path, [*final_conversations(), broken])
    with pytest.raises(InvariantError, match=broken.id):
        export(store, config)
    assert not (tmp_path / "run" / "dataset.jsonl").exists()


def test_export_is_deterministic(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    run = tmp_path / "run"
    names = [
        "dataset.jsonl",
        "dataset.filtered.jsonl",
        "dataset.parquet",
        "dataset.filtered.parquet",
    ]
    export(store, config, with_metadata=True, parquet=True)
    first = {name: (run / name).read_bytes() for name in names}
    export(store, config, with_metadata=True, parquet=True)
    assert {name: (run / name).read_bytes() for name in names} == first
    # Another run directory with the same records gives the same bytes too.
    other, other_config = finished_run(tmp_path, name="other")
    export(other, other_config, with_metadata=True, parquet=True)
    assert {name: (tmp_path / "other" / name).read_bytes() for name in names} == first


def test_an_out_path_outside_the_run_is_written_atomically_with_its_siblings(
    tmp_path: Path,
) -> None:
    store, config = finished_run(tmp_path)
    out = tmp_path / "exports" / "laerebogen.jsonl"
    result = export(store, config, out, parquet=True)
    assert (result.complete, result.count) == (out, 6)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "laerebogen.filtered.jsonl",
        "laerebogen.filtered.parquet",
        "laerebogen.jsonl",
        "laerebogen.parquet",
    ]
    assert not (tmp_path / "run" / "dataset.jsonl").exists()
    # The run's default export has the same bytes.
    export(store, config)
    assert out.read_bytes() == (tmp_path / "run" / "dataset.jsonl").read_bytes()
    # A file inside the run directory goes through the store, in any subfolder.
    inside = export(store, config, tmp_path / "run" / "exports" / "all.jsonl").complete
    assert inside.read_bytes() == out.read_bytes()
    assert (tmp_path / "run" / "exports" / "all.filtered.jsonl").is_file()


def test_export_refuses_an_unfinished_run_and_a_name_without_jsonl(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    with pytest.raises(LaerebogenError, match=r"must end in \.jsonl"):
        export(store, config, tmp_path / "dataset.parquet")
    (tmp_path / "run" / merge_file("followups")).unlink()
    with pytest.raises(StoreError, match="followups is not merged"):
        export(store, config)
    assert not (tmp_path / "run" / "dataset.jsonl").exists()


def test_an_empty_dataset_exports_empty_files(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, [])
    result = export(store, config, with_metadata=True, parquet=True)
    assert (result.count, result.filtered_count) == (0, 0)
    assert result.complete.read_bytes() == b"" == result.filtered.read_bytes()
    assert result.parquet is not None
    import pyarrow.parquet as pq

    assert pq.read_table(result.parquet[0]).num_rows == 0


# ---------------------------------------------------------------- loading with datasets


@pytest.mark.parametrize("with_metadata", [False, True])
def test_jsonl_and_parquet_load_with_datasets_as_the_same_rows(
    tmp_path: Path, with_metadata: bool
) -> None:
    store, config = finished_run(tmp_path)
    result = export(store, config, with_metadata=with_metadata, parquet=True)
    assert result.parquet is not None
    cache = str(tmp_path / "hf-cache")
    for jsonl, parquet in zip((result.complete, result.filtered), result.parquet, strict=True):
        expected = read_lines(jsonl)
        from_json = load_dataset("json", data_files=str(jsonl), split="train", cache_dir=cache)
        from_parquet = load_dataset(
            "parquet", data_files=str(parquet), split="train", cache_dir=cache
        )
        assert from_json.to_list() == from_parquet.to_list() == expected
        assert from_json.features == from_parquet.features
        assert from_parquet.column_names == list(expected[0])
        assert from_parquet.features["messages"].feature["role"].dtype == "string"
    if with_metadata:
        assert from_parquet.features["scores"]["assistant_words"].dtype == "int64"
        assert from_parquet.features["scores"]["lix"].dtype == "float64"


def test_export_command_writes_complete_and_filtered_files(
    reference_run: Path, tmp_path: Path
) -> None:
    from tests.support.commands import cli

    out = tmp_path / "export" / "laerebogen.jsonl"
    result = cli("export", "--run", str(reference_run), "--out", str(out), "--with-metadata")
    assert result.returncode == 0, result.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines and all({"id", "messages", "scores"} <= set(json.loads(line)) for line in lines)
    assert (tmp_path / "export" / "laerebogen.filtered.jsonl").is_file()
    assert f"complete: {len(lines)} conversations -> {out}" in result.stdout


# ---------------------------------------------------------------- rules on the annotation


def judged(quality: int = 4, harm: str = "nej", domain: str = "sundhed") -> Annotation:
    return Annotation(domain, "råd", 2, quality, "En grund.", harm)


def test_harmful_low_quality_and_unannotated_conversations_leave_the_filtered_version(
    tmp_path: Path,
) -> None:
    annotations: list[Annotation | None] = [judged()] * 6
    store, config = finished_run(tmp_path, annotations=annotations)
    assert export(store, config).filtered_count == len(PASSING)
    for planted, reason in (
        (judged(harm="vold"), "harmful"),
        (judged(quality=2), "min_quality"),
        (None, "unannotated"),
    ):
        changed = [planted if index == PASSING[0] else a for index, a in enumerate(annotations)]
        store, config = finished_run(tmp_path, annotations=changed, name=reason)
        result = export(store, config, with_metadata=True)
        assert result.filtered_count == len(PASSING) - 1, reason
        kept = [line["id"] for line in read_lines(result.filtered)]
        assert final_conversations()[PASSING[0]].id not in kept
        # The complete version keeps it, with its annotation (null when it has none).
        line = read_lines(result.complete)[PASSING[0]]
        assert line["annotation"] == (None if planted is None else msgspec.to_builtins(planted))
    # min_quality is inclusive, and follows the config.
    at_threshold = [judged(quality=3)] * 6
    store, config = finished_run(tmp_path, annotations=at_threshold, name="at-threshold")
    assert export(store, config).filtered_count == len(PASSING)
    store, config = finished_run(
        tmp_path, annotations=at_threshold, name="stricter", overrides=["export.min_quality=4"]
    )
    assert export(store, config).filtered_count == 0


def test_without_the_annotate_step_no_annotation_rule_applies(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path, annotate=False)
    assert annotation_rules(config) == {}
    result = export(store, config, with_metadata=True, parquet=True)
    assert result.filtered_count == len(PASSING)
    assert "annotation" not in read_lines(result.complete)[0]
    assert result.parquet is not None
    assert (
        "annotation"
        not in load_dataset("parquet", data_files=str(result.parquet[0]))["train"].features
    )


def test_the_domain_cap_leaves_out_the_lowest_quality_first_until_it_holds() -> None:
    def cap(domains_and_quality: list[tuple[str, int]], share: float) -> set[int]:
        candidates = [
            (i, judged(quality=q, domain=d)) for i, (d, q) in enumerate(domains_and_quality)
        ]
        return over_domain_share(candidates, share)

    # 6 of 8 in one domain, at most half: 2 may stay (2 of 4), its four lowest go.
    mixed = [
        ("mad", 5),
        ("mad", 1),
        ("jura", 4),
        ("mad", 3),
        ("kultur", 2),
        ("mad", 3),
        ("mad", 4),
        ("mad", 2),
    ]
    assert cap(mixed, 0.5) == {1, 3, 5, 7}
    # Ties of quality: the later conversation goes first.
    assert cap([("mad", 3), ("mad", 3), ("jura", 3)], 0.5) == {1}
    assert cap(mixed, 1.0) == set() and cap([], 0.3) == set()
    # One domain alone cannot hold any share below 1.
    assert cap([("mad", 5)] * 3, 0.9) == {0, 1, 2}
    # The rule as the export applies it: after every other rule, on what is left.
    failures = judge_filtered(
        [Judged({"x": 1.0}, judged(domain="mad"), ()),
         Judged({"x": 1.0}, judged(domain="mad", quality=5), ()),
         Judged({"x": 0.0}, judged(domain="jura"), ()),
         Judged({"x": 1.0}, judged(domain="jura"), ())],
        {"min_x": 0.5},
        {"min_quality": 3.0, "max_domain_share": 0.5},
    )  # fmt: skip
    assert failures == [["max_domain_share"], [], ["min_x"], []]


def test_max_domain_share_in_the_config_caps_the_filtered_version(tmp_path: Path) -> None:
    annotations = [judged(domain="mad" if index == PASSING[0] else "jura") for index in range(6)]
    annotations[PASSING[1]] = judged(domain="jura", quality=5)
    store, config = finished_run(
        tmp_path, annotations=annotations, overrides=["export.max_domain_share=0.5"]
    )
    assert annotation_rules(config)["max_domain_share"] == 0.5
    assert export(store, config).filtered_count == 2  # one of each domain: a half each
    annotations[PASSING[0]] = judged(domain="jura", quality=3)
    store, config = finished_run(
        tmp_path,
        annotations=annotations,
        name="one-domain",
        overrides=["export.max_domain_share=0.5"],
    )
    assert export(store, config).filtered_count == 0


def test_conversations_with_a_failing_code_block_leave_the_filtered_version(
    tmp_path: Path,
) -> None:
    failing = [
        (BlockCheck(1, 0, "python", "ok"), BlockCheck(1, 1, "python", "timeout", "over 5 s")),
        (),
    ]
    checks = [(BlockCheck(1, 0, "sql", "not_verifiable", "needs its own tables"),)] * 6
    checks[PASSING[0]], checks[PASSING[1]] = failing
    store, config = finished_run(tmp_path, code_checks=checks)
    assert code_rules(config) == dict.fromkeys(
        ["code_syntax_error", "code_exception", "code_timeout", "code_resource_limit"], 1.0
    )
    result = export(store, config, with_metadata=True, parquet=True)
    assert result.filtered_count == 1  # the first passing one has a block that timed out
    (kept,) = read_lines(result.filtered)
    assert kept["id"] == final_conversations()[PASSING[1]].id and kept["code_check"] == []
    first = read_lines(result.complete)[PASSING[0]]
    assert first["code_check"] == [
        {"message": 1, "block": 0, "language": "python", "outcome": "ok"},
        {"message": 1, "block": 1, "language": "python", "outcome": "timeout",
         "detail": "over 5 s"},
    ]  # fmt: skip
    assert result.parquet is not None
    rows = load_dataset("parquet", data_files=str(result.parquet[0]))["train"]
    assert rows[PASSING[0]]["code_check"][1]["outcome"] == "timeout"
    assert rows[1]["code_check"][0]["detail"] == "needs its own tables"
    assert rows[PASSING[0]]["code_check"][0]["detail"] is None  # JSONL leaves it out


def test_without_the_code_check_no_code_rule_or_column_exists(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    assert code_rules(config) == {}
    result = export(store, config, with_metadata=True)
    assert "code_check" not in read_lines(result.complete)[0]
