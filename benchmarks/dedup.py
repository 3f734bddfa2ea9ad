"""Exact ROUGE-L dedup vs brute-force ``rouge_score``, then at 52,000 and 260,000 texts.

The corpus imitates generated Danish instructions: 4-60 words from a Zipf-distributed
vocabulary of Danish words and Danish-looking compounds, with about 10% planted
near-duplicates of earlier texts (words reordered, shortened, one word changed, a shared
prefix with a new ending). Brute force is what the reference recipe does: every text
against every kept text with ``rouge_score``'s scorer (here with the project tokenizer).
Both must make identical decisions on the same 2,000 texts; brute force scores every pair on
all cores, so its time is the wall time a user of the reference recipe would wait.

Targets on the 2-core development machine: identical decisions; 260,000 texts in <= 60 s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import time

from rouge_score import rouge_scorer

from laerebogen.filtering.dedup import rouge_l_dedup, tokenize

STEMS = (
    "skriv forklar giv lav find beskriv nævn beregn sammenlign oversæt omskriv vurder foreslå "
    "dansk danske kommune borger skat uddannelse arbejde sundhed historie natur klima energi "
    "opskrift brød kage fisk kartofler æble pære blåbær sommer vinter forår efterår skov sø hav "
    "bil cykel tog bus hus lejlighed have familie børn skole lærer elev bog tekst sætning ord "
    "komma grammatik digt historie eventyr konge dronning krig fred valg parti lov ret pligt "
    "hvorfor hvordan hvad hvilke hvornår og i at det er en på til som med for af ikke den der"
).split()
SYLLABLES = "for be ud an er ing hed lig else skab sam over mod til af gen sæt før ål øre".split()


def vocabulary(rng: random.Random, size: int) -> tuple[list[str], list[float]]:
    """Real Danish stems first, then compounds; weights follow Zipf's law (1/rank)."""
    words = list(STEMS)
    while len(words) < size:
        words.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    cumulative, total = [], 0.0
    for rank in range(1, size + 1):
        total += 1.0 / rank
        cumulative.append(total)
    return words, cumulative


def near_duplicate(rng: random.Random, text: str, words: list[str]) -> str:
    """A planted near-duplicate of ``text``."""
    tokens = text.split()
    kind = rng.randrange(4)
    if kind == 0 and len(tokens) > 3:  # a few words reordered
        i = rng.randrange(len(tokens) - 2)
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    elif kind == 1 and len(tokens) > 5:  # shortened
        tokens = tokens[: max(4, int(len(tokens) * rng.uniform(0.7, 0.95)))]
    elif kind == 2:  # one word changed
        tokens[rng.randrange(len(tokens))] = rng.choice(words)
    else:  # shared prefix, new ending
        cut = max(1, int(len(tokens) * rng.uniform(0.6, 0.9)))
        tokens = tokens[:cut] + rng.choices(words, k=len(tokens) - cut)
    return " ".join(tokens)


def corpus(count: int, seed: int = 1) -> list[str]:
    """``count`` instruction-like texts, about 10% of them near-duplicates of earlier ones."""
    rng = random.Random(seed)
    words, cumulative = vocabulary(rng, max(5000, count // 4))
    texts: list[str] = []
    for _ in range(count):
        if texts and rng.random() < 0.1:
            texts.append(near_duplicate(rng, rng.choice(texts), words))
        else:
            chosen = rng.choices(words, cum_weights=cumulative, k=rng.randint(4, 60))
            texts.append(" ".join(chosen).capitalize() + "?")
    return texts


class _ProjectTokenizer:
    """What ``rouge_score`` needs: an object with ``tokenize``."""

    tokenize = staticmethod(tokenize)


def _similar_to_earlier(args: tuple[list[str], float, int, int]) -> list[list[int]]:
    """For texts ``start, start+step, ...``: the earlier texts above the threshold."""
    texts, threshold, start, step = args
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_ProjectTokenizer())
    return [
        [j for j in range(i) if scorer.score(texts[j], texts[i])["rougeL"].fmeasure > threshold]
        for i in range(start, len(texts), step)
    ]


def brute_force(texts: list[str], threshold: float) -> list[int]:
    """The reference: every pair scored by ``rouge_score`` on all cores, then the greedy pass."""
    workers = len(os.sched_getaffinity(0))
    with multiprocessing.Pool(workers) as pool:
        parts = pool.map(
            _similar_to_earlier, [(texts, threshold, w, workers) for w in range(workers)]
        )
    similar = {
        i: part[k]
        for w, part in enumerate(parts)
        for k, i in enumerate(range(w, len(texts), workers))
    }
    kept: list[int] = []
    kept_set: set[int] = set()
    for i in range(len(texts)):
        if not kept_set.intersection(similar[i]):
            kept.append(i)
            kept_set.add(i)
    return kept


def timed(function, *args) -> tuple[float, list[int]]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brute", type=int, default=2000, help="texts compared with brute force")
    parser.add_argument("--sizes", type=int, nargs="*", default=[52_000, 260_000])
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()

    texts = corpus(args.brute)
    brute_s, expected = timed(brute_force, texts, args.threshold)
    ours_s, kept = timed(rouge_l_dedup, texts, args.threshold)
    identical = kept == expected
    speedup = brute_s / ours_s
    print(
        f"{args.brute:>7,} texts: brute force {brute_s:7.2f} s, ours {ours_s:6.3f} s "
        f"({speedup:,.0f}x), kept {len(kept):,}, identical decisions: {identical}"
    )
    seconds: dict[int, float] = {}
    for size in args.sizes:
        seconds[size], kept = timed(rouge_l_dedup, corpus(size, seed=size))
        print(f"{size:>7,} texts: ours {seconds[size]:6.2f} s, kept {len(kept):,}")
    largest = max(seconds) if seconds else args.brute
    print(
        f"RESULT identical={identical} speedup_{args.brute}={speedup:.0f} "
        + " ".join(f"seconds_{size}={value:.1f}" for size, value in seconds.items())
        + f" target_seconds_{largest}=60"
    )


if __name__ == "__main__":
    main()
