"""Exact ROUGE-L dedup: Danish tokens, and the very decisions of brute-force rouge_score."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from laerebogen.filtering.dedup import near_duplicate_pairs, rouge_l, rouge_l_dedup, tokenize


class ProjectTokenizer:
    tokenize = staticmethod(tokenize)


SCORER = rouge_scorer.RougeScorer(["rougeL"], tokenizer=ProjectTokenizer())


def brute_force(texts: list[str], threshold: float, existing: list[str] = ()) -> list[int]:
    kept: list[int] = []
    for i, text in enumerate(texts):
        others = [*existing, *(texts[j] for j in kept)]
        if all(SCORER.score(other, text)["rougeL"].fmeasure <= threshold for other in others):
            kept.append(i)
    return kept


def test_tokenize_keeps_danish_letters_and_drops_punctuation() -> None:
    assert tokenize("Ærø og blåbær!") == ["ærø", "og", "blåbær"]
    assert tokenize("En sætning, der slutter.") == ["en", "sætning", "der", "slutter"]
    assert tokenize("Café-kulturen i år 1992 (ca. 30%)") == [
        "café",
        "kulturen",
        "i",
        "år",
        "1992",
        "ca",
        "30",
    ]
    assert tokenize("snake_case og Œuvre — «citat»") == ["snake", "case", "og", "œuvre", "citat"]
    assert tokenize("  ...  ") == []


def test_rouge_score_default_tokenizer_is_why_we_have_our_own() -> None:
    default = rouge_scorer.RougeScorer(["rougeL"])
    # Upstream sees "en s tning om bler" in both; we see two different words of four.
    assert default.score("En sætning om æbler", "En søtning om øbler")["rougeL"].fmeasure == 1.0
    assert rouge_l("En sætning om æbler", "En søtning om øbler") == pytest.approx(0.5)


WORDS = [
    *("forklar", "giv", "nævn", "beskriv", "hvordan", "hvorfor", "hvad", "er", "en", "et"),
    *("og", "i", "på", "til", "med", "danske", "dansk", "kommune", "skat", "uddannelse"),
    *("sætning", "æble", "blåbær", "rødgrød", "fløde", "sommer", "vinter", "skov", "sø"),
    *("historie", "konge", "digt", "kort", "lang", "tekst", "opskrift", "brød", "kage", "ost"),
]


def planted_corpus(rng: random.Random, count: int) -> list[str]:
    texts: list[str] = []
    for _ in range(count):
        if texts and rng.random() < 0.3:
            tokens = rng.choice(texts).split()
            kind = rng.randrange(4)
            if kind == 0 and len(tokens) > 2:
                i = rng.randrange(len(tokens) - 1)
                tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
            elif kind == 1 and len(tokens) > 3:
                tokens = tokens[: rng.randint(3, len(tokens) - 1)]
            elif kind == 2:
                tokens[rng.randrange(len(tokens))] = rng.choice(WORDS)
            else:
                cut = rng.randint(1, len(tokens))
                tokens = tokens[:cut] + rng.choices(WORDS, k=rng.randint(0, 6))
            texts.append(" ".join(tokens) + rng.choice(["", ".", "?", "!"]))
        else:
            texts.append(" ".join(rng.choices(WORDS, k=rng.randint(1, 25))).capitalize() + ".")
    return texts


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_decisions_equal_brute_force_on_planted_near_duplicates(threshold: float) -> None:
    texts = planted_corpus(random.Random(int(threshold * 100)), 250)
    kept = rouge_l_dedup(texts, threshold)
    assert kept == brute_force(texts, threshold)
    assert 0 < len(kept) <= len(texts)


def test_existing_pool_rejects_but_is_never_returned() -> None:
    pool = ["Forklar hvordan man bager rugbrød med surdej.", "Nævn tre danske øer."]
    texts = [
        "Forklar, hvordan man bager rugbrød med surdej!",  # same tokens as the pool
        "Nævn tre store danske øer.",  # near the pool
        "Hvad er hovedstaden i Norge?",
        "Hvad er hovedstaden i Norge",  # duplicate of the kept text above
    ]
    assert rouge_l_dedup(texts, 0.7, existing=pool) == [2]
    assert rouge_l_dedup(texts, 0.7, existing=pool) == brute_force(texts, 0.7, pool)


def test_edge_cases() -> None:
    assert rouge_l_dedup([]) == []
    assert rouge_l_dedup(["", "", "!"]) == [0, 1, 2]  # nothing to compare: ROUGE-L is 0
    assert rouge_l_dedup(["a b", "a b"], threshold=1.0) == [0, 1]
    assert rouge_l_dedup(["a b", "a b"], threshold=0.99) == [0]
    with pytest.raises(ValueError, match="threshold"):
        rouge_l_dedup(["a"], threshold=-0.1)


def test_boundary_scores_follow_rouge_scores_floating_point() -> None:
    # 2·L/(m+n) is exactly 0.7 in these pairs; the decision must be rouge_score's, whatever
    # rounding does to it.
    base = [f"w{i}" for i in range(13)]
    texts = [" ".join(base), " ".join(base[:7])]  # L=7, m=13, n=7: F = 14/20
    texts += [" ".join(base[:4] + ["x"] * 3), " ".join([*base[:3], "y"])]
    assert rouge_l_dedup(texts, 0.7) == brute_force(texts, 0.7)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "d", "æ", "ø", "å", "e f"]), max_size=14).map(
            " ".join
        ),
        max_size=30,
    ),
    existing=st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "ø"]), max_size=8).map(" ".join), max_size=4
    ),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.95]),
)
def test_property_identical_to_brute_force(
    texts: list[str], existing: list[str], threshold: float
) -> None:
    assert rouge_l_dedup(texts, threshold, existing) == brute_force(texts, threshold, existing)


def test_near_duplicate_pairs_reports_scores() -> None:
    pairs = near_duplicate_pairs(["Nævn tre danske øer", "Nævn tre danske øer nu", "Bag et brød"])
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
    assert pairs[0][2] == pytest.approx(2 * 4 / 9)


def test_dedup_command_keeps_original_lines_of_jsonl_seed_files_and_shards(tmp_path) -> None:
    from laerebogen.store.run_dir import RunStore
    from tests.support.commands import cli
    from tests.support.records import make_example

    lines = [
        '{"instruction": "Nævn tre danske øer.", "output": "Fyn"}',
        '{"instruction": "Nævn tre store danske øer.", "output": "Sjælland", "extra": 1}',
        '{"instruction": "Forklar fotosyntese kort.", "output": "Planter laver sukker."}',
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    result = cli("dedup", str(source), str(target))
    assert result.returncode == 0, result.stderr
    assert "read 3, kept 2, removed 1" in result.stdout
    assert target.read_text(encoding="utf-8").splitlines() == [lines[0], lines[2]]

    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "Forklar fotosyntese helt kort!", "output": "x"}\n')
    against = cli("dedup", str(source), str(target), "--existing", str(pool))
    assert against.returncode == 0, against.stderr
    assert target.read_text(encoding="utf-8").splitlines() == [lines[0]]

    store = RunStore(tmp_path / "run")
    with store.open_shard("generation", 0) as writer:
        writer.write_chunk([make_example(0), make_example(0), make_example(1)], consumed=["a"])
        writer.finish()
    shard = cli(
        "dedup", str(store.output_paths("generation", 0).data), str(target), "--threshold", "0.95"
    )
    assert shard.returncode == 0, shard.stderr
    assert "read 3, kept 2" in shard.stdout

    source.write_text(lines[0] + "\n{broken\n", encoding="utf-8")
    broken = cli("dedup", str(source), str(target))
    assert broken.returncode == 2 and f"{source}:2: not JSON" in broken.stderr
