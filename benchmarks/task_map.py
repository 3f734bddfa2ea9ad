"""The task map's layout: time and memory for 20,000 instructions and for 200,000 (sampled).

The corpus imitates generated Danish instructions: 8-40 words, each an instruction verb, then
words of one of a few topics mixed with common Danish words, so the texts have the clusters a
real dataset has. 200,000 texts are sampled down to the map's 20,000 points, so they should take
about as long as 20,000. Peak memory is the process's maximum resident set, data included.

**Reproducibility.** ``--check`` texts laid out with the threads this process may use and
again with one thread must give the same bits (t-SNE's sums over threads would differ from
about 2,000 points if the layout did not run on one thread).

Target on the 2-core development machine: 20,000 points in well under 90 s, since the browse
command has 3 minutes for everything of 200,000 conversations.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from laerebogen.outputs.task_map import MAX_POINTS, layout

VERBS = "skriv forklar giv lav find beskriv nævn beregn sammenlign oversæt omskriv vurder".split()
COMMON = (
    "og i at det er en på til som med for af ikke den der et om hvordan hvad hvorfor kan jeg "
    "du vi de min din meget mere nogle alle også men eller så har have være blive kort gerne"
).split()
TOPICS = (
    "opskrift kage brød mel sukker smør ovn bage dej æbler kanel fløde chokolade minutter",
    "kommune borger skat regler ansøgning ydelse pension boligstøtte sagsbehandling frist",
    "python funktion liste variabel fejl kode program streng sortering løkke klasse modul",
    "digt strofe rim vers sommer hav bølger lys længsel kærlighed natten stjerner ord",
    "sundhed læge medicin søvn motion kost blodtryk symptomer behandling sygdom hospital",
    "historie konge krig reformation grundloven enevælde middelalder vikinger århundrede",
    "cykel tog bus rejse billet køreplan stationen afgang forsinkelse trafik vej bilen",
    "skole elev lærer opgave eksamen karakter undervisning matematik dansk læsning klasse",
    "klima energi vindmøller solceller udledning co2 bæredygtig forbrug varmepumpe strøm",
    "arbejde løn kontrakt ferie opsigelse chef kollega møde ansøgning jobsamtale karriere",
)


def corpus(count: int, seed: int = 1) -> list[str]:
    """``count`` instruction-like texts of 8-40 words, each mostly about one topic."""
    rng = random.Random(seed)
    topics = [topic.split() for topic in TOPICS]
    texts = []
    for _ in range(count):
        topic = rng.choice(topics)
        words = [
            rng.choice(topic) if rng.random() < 0.4 else rng.choice(COMMON)
            for _ in range(rng.randint(7, 39))
        ]
        texts.append(f"{rng.choice(VERBS).capitalize()} {' '.join(words)}.")
    return texts


def timed_layout(texts: list[str], points: int) -> float:
    start = time.perf_counter()
    task_map = layout(texts, seed=1, max_points=points)
    seconds = time.perf_counter() - start
    print(f"{len(texts):>9,} texts -> {len(task_map.rows):,} points: {seconds:6.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=MAX_POINTS, help="points of the map")
    parser.add_argument("--texts", type=int, default=200_000, help="texts sampled to --points")
    parser.add_argument("--check", type=int, default=2_000, help="texts of the thread check")
    args = parser.parse_args()

    seconds = timed_layout(corpus(args.points), args.points)
    sampled = timed_layout(corpus(args.texts, seed=2), args.points)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak_mib:,.0f} MiB")
    texts = corpus(args.check, seed=3)
    threads = max(pool["num_threads"] for pool in threadpool_info())
    ambient = layout(texts, seed=1).xy
    with threadpool_limits(limits=1):
        same = np.array_equal(ambient, layout(texts, seed=1).xy)
    print(f"{args.check:,} texts with {threads} threads and with 1: same bits: {same}")
    print(
        f"RESULT points={args.points} seconds={seconds:.1f} texts={args.texts} "
        f"seconds_sampled={sampled:.1f} peak_mib={peak_mib:.0f} threads={threads} "
        f"same_across_threads={same}"
    )


if __name__ == "__main__":
    main()
