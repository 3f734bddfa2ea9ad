"""Decontamination: which n finds planted copies without false matches, and how fast it runs.

**Planted cases.** Half of the packaged seed tasks play an evaluation set (field ``question``:
instruction and input; ``answer``: the output). The other half, as conversations, and the
shipped Danish corpus's passages, as texts to answer questions on, are clean: written
independently of those items, so every match among them is a false one (shared stock phrases).
Into further conversations each item is planted: its question verbatim, in capitals without
punctuation, inside a longer message, its answer pasted as a text to work on, and the first
half of that answer (answers of fewer than ``min_tokens`` words, which cannot match, are not
pasted); near misses are the question and the answer with their middle word and every fifth
word changed (no five words in a row of the item, never the whole of a short field). For each
n: planted copies found, near misses matched, clean conversations matched (user messages, and
with answers). For each ``min_tokens``: whole copies found, and the synthetic conversations
below that a short field matched by chance.

**Speed and memory.** ``--conversations`` synthetic conversations (four user messages of a
Zipf vocabulary, as ``dedup.py`` makes its texts) against ``--items`` items (a question and an
answer), a few of them planted; the baseline is the plain approach, every item's n-grams as
Python tuples in a set and every window of every message looked up, timed on the first
``--baseline`` conversations. Peak memory is the process's maximum resident set, data included.

Targets on the 2-core development machine: 200,000 conversations against 50,000 items in at most
120 s and under 2 GiB.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from dedup import vocabulary  # type: ignore[import-not-found]  # benchmarks/dedup.py

from laerebogen.config.schema import Decontamination, Grounded
from laerebogen.decontamination.ngrams import BenchmarkIndex, Item, Rule, find_matches
from laerebogen.filtering.dedup import tokenize
from laerebogen.outputs.decontaminate import rule_of
from laerebogen.seeds import load_seeds, packaged_seed_path
from laerebogen.sources.corpus import corpus_passages

NS = (4, 5, 6, 7, 8, 10, 13)
MIN_TOKENS = (3, 4, 5, 6)
PLANTED = ("verbatim", "capitals", "inside", "passage", "half_passage")
WHOLE_COPIES = PLANTED[:4]  # a whole field copied, however it is dressed
NEAR_MISSES = ("question_near", "answer_near")
FILLER = "Jeg har et spørgsmål til dig, som jeg håber du kan hjælpe med i dag."


def seed_pairs() -> list[tuple[str, str]]:
    """(question, answer) of every packaged seed task, in file order."""
    pairs = []
    for task in load_seeds(packaged_seed_path()):
        instance = task.instances[0]
        question = f"{task.instruction}\n{instance.input}".strip()
        pairs.append((question, instance.output))
    return pairs


def changed_every(text: str, step: int, rng: random.Random) -> str:
    """``text``'s words with every ``step``-th replaced by a word not in it."""
    words = tokenize(text)
    for position in range(step - 1, len(words), step):
        words[position] = rng.choice(["blomsterkasse", "solsort", "havelåge", "trækrone"])
    return " ".join(words)


def one_word_changed(text: str) -> str:
    """``text``'s words with the middle one replaced (a short field is then never whole)."""
    words = tokenize(text)
    words[len(words) // 2] = "kartoffel"
    return " ".join(words)


def planted(question: str, answer: str, kind: str, rng: random.Random) -> list[str]:
    """The user messages of a conversation that holds the item in the way ``kind`` says."""
    half = " ".join(answer.split()[: len(answer.split()) // 2])
    return {
        "verbatim": [question],
        "capitals": ["".join(c if c.isalnum() else " " for c in question.upper())],
        "inside": [f"{FILLER} {question} Svar gerne kort."],
        "passage": [f"Opsummer denne tekst i tre punkter:\n\n{answer}"],
        "half_passage": [f"Hvad mener du om dette afsnit?\n\n{half}"],
        "question_near": [changed_every(one_word_changed(question), 5, rng)],
        "answer_near": [f"Opsummer denne tekst:\n\n{changed_every(answer, 5, rng)}"],
    }[kind]


class Cases(NamedTuple):
    """The evaluation items and the conversations the accuracy is measured on."""

    items: list[Item]
    planted: dict[str, list[list[str]]]  # kind -> conversations (copies and near misses)
    clean_user: list[list[str]]
    clean_both: list[list[str]]  # the same with the answers


def cases() -> Cases:
    pairs = seed_pairs()
    benchmark, clean_pairs = pairs[0::2], pairs[1::2]
    items = [Item(f"seed-{2 * k}", pair) for k, pair in enumerate(benchmark)]
    grounded = Grounded(corpus="packaged:corpus_da")
    texts = [[f"Læs teksten:\n\n{record.instruction}"] for record in corpus_passages(grounded)]
    rng = random.Random(7)
    # Answers of fewer words than the smallest min_tokens measured can never match: not pasted.
    pasted = [(q, a) for q, a in benchmark if len(tokenize(a)) >= min(MIN_TOKENS)]
    planted_cases = {
        kind: [planted(q, a, kind, rng) for q, a in (pasted if "passage" in kind else benchmark)]
        for kind in PLANTED + NEAR_MISSES
    }
    return Cases(
        items,
        planted_cases,
        [[q] for q, _ in clean_pairs] + texts,
        [[q, a] for q, a in clean_pairs] + texts,
    )


def accuracy(measured: Cases, rule: Rule) -> dict[str, float]:
    """Share of planted copies found and near misses matched; clean conversations matched."""
    index = BenchmarkIndex.build(measured.items, rule)
    row = {
        kind: len(find_matches(index, conversations).items) / len(conversations)
        for kind, conversations in measured.planted.items()
    }
    row["clean_user"] = len(find_matches(index, measured.clean_user).items)
    row["clean_with_answers"] = len(find_matches(index, measured.clean_both).items)
    return row


def synthetic(count: int, seed: int) -> Iterator[list[str]]:
    """``count`` conversations of four user messages of Zipf-distributed words."""
    rng = random.Random(seed)
    words, cumulative = vocabulary(rng, 50_000)
    for _ in range(count):
        yield [
            " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(low, high)))
            for low, high in ((20, 80), (5, 30), (5, 30), (5, 30))
        ]


def synthetic_items(count: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    words, cumulative = vocabulary(rng, 50_000)
    return [
        Item(
            f"item-{number}",
            tuple(
                " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(low, high)))
                for low, high in ((8, 60), (1, 30))
            ),
        )
        for number in range(count)
    ]


def with_planted(conversations: Iterator[list[str]], items: Sequence[Item]) -> Iterator[list[str]]:
    """Every 1,000th conversation gets an item's question as its last message."""
    for number, messages in enumerate(conversations):
        plant = number % 1000 == 999
        yield [*messages, items[number % len(items)].fields[0]] if plant else messages


def plain(items: Sequence[Item], conversations: Sequence[list[str]], n: int) -> int:
    """The baseline: tuples of long fields' n-grams in a set, every window looked up."""
    grams = set()
    for item in items:
        for text in item.fields:
            tokens = tokenize(text)
            grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    found = 0
    for messages in conversations:
        for text in messages:
            tokens = tokenize(text)
            if any(tuple(tokens[i : i + n]) in grams for i in range(len(tokens) - n + 1)):
                found += 1
                break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    args = parser.parse_args()
    settings = Decontamination()

    measured = cases()
    rule = rule_of(settings)
    figures = {n: accuracy(measured, rule._replace(n=n)) for n in NS}
    columns = [*PLANTED, *NEAR_MISSES]
    print(f"planted copies found / near misses matched (share), clean conversations matched "
          f"(of {len(measured.clean_user)}), min_tokens={rule.min_tokens}:")  # fmt: skip
    print(f"{'n':>3} " + " ".join(f"{c:>18}" for c in [*columns, "clean_user", "clean_w_answers"]))
    for n, row in figures.items():
        cells = [f"{row[c]:18.2f}" for c in columns]
        cells += [f"{row['clean_user']:18.0f}", f"{row['clean_with_answers']:18.0f}"]
        print(f"{n:>3} " + " ".join(cells))

    items = synthetic_items(args.items, seed=1)
    conversations = list(with_planted(synthetic(args.conversations, 2), items))
    started = time.perf_counter()
    index = BenchmarkIndex.build(items, rule)
    built = time.perf_counter() - started
    matches = find_matches(index, conversations)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.conversations:,} conversations against {args.items:,} items "
        f"(n={rule.n}): {seconds:.1f} s (index {built:.1f} s), peak {peak_mib:.0f} MiB with the "
        f"texts in memory, {len(matches.items)} contaminated ({args.conversations // 1000} planted)"
    )
    # Short fields against text they were not copied into: the synthetic conversations share
    # runs of frequent words with the items' short answers by chance.
    chance_sample = conversations[: max(1000, args.conversations // 4)]
    planted_there = len(chance_sample) // 1000
    print(f"min_tokens: whole copies found (n={rule.n}), synthetic conversations of "
          f"{len(chance_sample):,} matched by chance")  # fmt: skip
    chance: dict[int, int] = {}
    for least in MIN_TOKENS:
        shorter = rule._replace(min_tokens=least)
        found = min(accuracy(measured, shorter)[c] for c in WHOLE_COPIES)
        index_least = BenchmarkIndex.build(items, shorter)
        chance[least] = len(find_matches(index_least, chance_sample).items) - planted_there
        print(f"{least:>3} {found:6.2f} {chance[least]:8d}")
    sample = conversations[: args.baseline]
    started = time.perf_counter()
    plain(items, sample, rule.n)
    plain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    find_matches(index, sample)
    ours_seconds = time.perf_counter() - started
    print(f"{len(sample):,} conversations: plain {plain_seconds:.2f} s, ours {ours_seconds:.2f} s")
    default = figures[settings.ngram]
    print(
        f"RESULT n={settings.ngram} seconds={seconds:.1f} peak_mib={peak_mib:.0f} "
        f"speedup={plain_seconds / ours_seconds:.2f} "
        f"planted_found={min(default[c] for c in WHOLE_COPIES):.2f} "
        f"half_found={default['half_passage']:.2f} "
        f"near_missed={max(default[c] for c in NEAR_MISSES):.2f} "
        f"clean_matched={default['clean_with_answers']:.0f} "
        f"chance_matched={chance[rule.min_tokens]} target_seconds=120 target_mib=2048"
    )


if __name__ == "__main__":
    main()
