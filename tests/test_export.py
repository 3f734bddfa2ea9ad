"""LIX and conversation scores, and the export: lines, metadata, filtering, files, Parquet.

LIX values are computed by hand in the comments. The export runs on a run directory built
with the store (planned steps, hand-written merged sets and merge results), so no model is
needed; the files are loaded back with ``datasets`` as a user would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from datasets import load_dataset

from laerebogen.config import Config, Export, load_config
from laerebogen.errors import InvariantError, LaerebogenError, StoreError
from laerebogen.export import (
    FILTER_REASONS,
    export,
    export_dataset,
    export_scores,
    failed_filters,
    filter_reasons,
    passes,
)
from laerebogen.plan import MergeResult, StepPlan, merge_file, plan_first, plan_next, read_plan
from laerebogen.readability import conversation_scores, count_text, count_texts, lix, word_count
from laerebogen.records import Example, Message, Provenance, Step, record_id
from laerebogen.run import start_run
from laerebogen.store import RunStore
from tests.helpers import make_example

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


def conversation(
    *turns: str, scores: dict[str, float] | None = None, index: int = 0, **provenance: object
) -> Example:
    """A conversation of alternating user and assistant messages."""
    messages = tuple(
        Message("user" if position % 2 == 0 else "assistant", text)
        for position, text in enumerate(turns)
    )
    origin = provenance.pop("origin", "self-instruct")
    return Example(
        id=record_id("export-test", index),
        instruction=turns[0],
        output=turns[1],
        messages=messages,
        provenance=Provenance(
            origin=origin,  # type: ignore[arg-type]
            steps=(Step("generation", 1, "tiny"), Step("followups", 0, "tiny")),
            **provenance,  # type: ignore[arg-type]
        ),
        scores=scores or {},
    )


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


# ---------------------------------------------------------------- a finished run

OVERRIDES = [
    "grammar.enabled=false",
    "quality.enabled=false",
    "evolution.generations=0",
    "generation.max_rounds=1",
    "followups.turns=1",
]
GOOD_ANSWER = (
    "Æbler er sunde, fordi de indeholder fibre og vitaminer. Fibrene hjælper fordøjelsen, og "
    "C-vitaminet styrker immunforsvaret. Spis gerne et æble om dagen som en del af en varieret "
    "kost."
)  # 29 words, 3 sentences, 9 long: LIX 40.70
FOLLOWUP_ANSWER = "Ja. Grønne æbler har lidt mindre sukker end røde, men forskellen er lille."
HARD_ANSWER = (
    "Sundhedsstyrelsens kostanbefalinger understreger betydningen af grøntsagsindtagelse "
    "fiberholdige fødevarer fuldkornsprodukter fiskeprodukter magert kød begrænset "
    "sukkerindtagelse reduceret saltindtagelse tilstrækkelig væskeindtagelse regelmæssig fysisk "
    "aktivitet for voksne børn ældre gravide ammende personer kroniske sygdomme"
)  # 30 words, 1 sentence, 22 long: LIX 103.33


def final_conversations() -> list[Example]:
    """The follow-ups' merged set: two conversations that pass the filters, four that do not."""
    question, again = "Hvorfor er æbler sunde?", "Er grønne æbler bedre end røde?"
    good = {"danish_confidence": 0.934567, "quality_good": 1.0}
    return [
        conversation(question, GOOD_ANSWER, again, FOLLOWUP_ANSWER, scores=good, index=0),
        # 4 words of answers: too few, and LIX 4.0 is too low.
        conversation("Nævn en frugt.", "Ja, fx et æble.", scores=good, index=1),
        # Danish less likely than the other languages together.
        conversation(
            question,
            GOOD_ANSWER,
            again,
            FOLLOWUP_ANSWER,
            scores={"danish_confidence": 0.31, "quality_good": 1.0},
            index=2,
        ),
        # Never judged for language: no confidence, so not in the filtered version.
        conversation(question, GOOD_ANSWER, again, FOLLOWUP_ANSWER, index=3),
        # One run-on sentence of compounds.
        conversation("Hvad anbefaler Sundhedsstyrelsen?", HARD_ANSWER, scores=good, index=4),
        conversation(
            "Skriv en kort tekst om blåbær på dansk.",
            GOOD_ANSWER.replace("Æbler", "Blåbær"),
            "Og om jordbær?",
            FOLLOWUP_ANSWER.replace("æbler", "jordbær"),
            scores={"danish_confidence": 0.5},  # exactly the threshold: bounds are inclusive
            index=5,
            origin="evolved",
            generation=2,
            operation="deepen",
        ),
    ]


PASSING = [0, 5]


def finished_run(
    tmp_path: Path, records: Sequence[Example] | None = None, name: str = "run"
) -> tuple[RunStore, Config]:
    """A run whose base generation and follow-ups are merged, with ``records`` as the result."""
    config = load_config("tiny", OVERRIDES)
    store = start_run(config, tmp_path / name)
    first = plan_first(store, config)
    base = [make_example(index) for index in range(4)]
    followups = plan_next(store, config, write_merged(store, first.step, base))
    assert followups is not None and followups.step == "followups"
    write_merged(store, followups.step, final_conversations() if records is None else records)
    store.write_state(
        merge_file(first.step), MergeResult(first.step, 4, 4, {}, followups.step, 0.1)
    )
    store.write_state(merge_file(followups.step), MergeResult(followups.step, 4, 6, {}, None, 0.1))
    return store, config


def write_merged(store: RunStore, step: str, records: Sequence[Example]) -> StepPlan:
    """The merged set of ``step`` as its merge job would write it; returns the step's plan."""
    with store.open_merged(step) as writer:
        writer.write_chunk(records, [], consumed=[record.id for record in records])
        writer.finish()
    plan = read_plan(store, step)
    assert plan is not None
    return plan


def read_lines(path: Path) -> list[dict]:
    """The lines of a JSONL file, refusing NaN and infinity as the JSON standard does."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: {constant} in the export")

    text = path.read_bytes().decode("utf-8")  # strict: the file is valid UTF-8
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def test_export_writes_one_conversation_per_line_in_the_run(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    path, count = export_dataset(store, config)
    assert path == tmp_path / "run" / "dataset.jsonl" and count == 6
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
        "generation",
        "operation",
        "turns",
        "scores",
    ]
    assert (first["origin"], first["generation"], first["operation"]) == ("self-instruct", 0, None)
    assert (evolved["origin"], evolved["generation"], evolved["operation"]) == (
        "evolved",
        2,
        "deepen",
    )
    assert first["turns"] == 2 and lines[1]["turns"] == 1
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
    assert passes(scores, filters)
    assert failed_filters({**scores, "lix": 60.01}, filters) == ["max_lix"]
    only_language = {"lix": 40.0, "assistant_words": 100}
    assert failed_filters(only_language, filters) == ["min_danish_confidence"]
    assert passes({"lix": 70.0}, {"max_lix": 80.0}) and not passes({}, {"max_lix": 80.0})
    with pytest.raises(ValueError, match="min_<score>"):
        failed_filters(scores, {"lix": 3.0})


def test_a_score_that_is_not_finite_stops_the_export(tmp_path: Path) -> None:
    broken = conversation("Hej?", GOOD_ANSWER, scores={"quality_good": math.nan}, index=9)
    with pytest.raises(InvariantError, match="quality_good is nan"):
        export_scores(broken)
    store, config = finished_run(tmp_path, [*final_conversations(), broken])
    with pytest.raises(InvariantError, match=broken.id):
        export_dataset(store, config)
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
    path, count = export_dataset(store, config, out, parquet=True)
    assert (path, count) == (out, 6)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "laerebogen.filtered.jsonl",
        "laerebogen.filtered.parquet",
        "laerebogen.jsonl",
        "laerebogen.parquet",
    ]
    assert not (tmp_path / "run" / "dataset.jsonl").exists()
    # The run's default export has the same bytes.
    export_dataset(store, config)
    assert out.read_bytes() == (tmp_path / "run" / "dataset.jsonl").read_bytes()
    # A file inside the run directory goes through the store, in any subfolder.
    inside, _ = export_dataset(store, config, tmp_path / "run" / "exports" / "all.jsonl")
    assert inside.read_bytes() == out.read_bytes()
    assert (tmp_path / "run" / "exports" / "all.filtered.jsonl").is_file()


def test_export_refuses_an_unfinished_run_and_a_name_without_jsonl(tmp_path: Path) -> None:
    store, config = finished_run(tmp_path)
    with pytest.raises(LaerebogenError, match=r"must end in \.jsonl"):
        export_dataset(store, config, tmp_path / "dataset.parquet")
    (tmp_path / "run" / merge_file("followups")).unlink()
    with pytest.raises(StoreError, match="followups is not merged"):
        export_dataset(store, config)
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
    from tests.test_cli import cli

    out = tmp_path / "export" / "laerebogen.jsonl"
    result = cli("export", "--run", str(reference_run), "--out", str(out), "--with-metadata")
    assert result.returncode == 0, result.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines and all({"id", "messages", "scores"} <= set(json.loads(line)) for line in lines)
    assert (tmp_path / "export" / "laerebogen.filtered.jsonl").is_file()
    assert f"complete: {len(lines)} conversations -> {out}" in result.stdout
