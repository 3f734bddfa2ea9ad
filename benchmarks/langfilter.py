"""Throughput of the Danish language filter on a merge-job batch of 20,000 triples.

The batch is the packaged seeds' 176 examples drawn with replacement and shuffled: Danish
instructions, inputs and answers with the seeds' mix of lengths, code, tables and translation
tasks. Lingua keeps no per-text cache, so a repeated text costs as much as a new one (checked:
10,000 copies of one text take as long as 10,000 different texts of the same length).

A "text" is one string the filter judges: a non-empty field of an example (about 2.3 per seed
example), as a detector's throughput is quoted per string. The rate per (instruction, input,
output) example is printed beside it. Figures per core divide by ``os.cpu_count()``; lingua's
parallel calls use every core. Target: >= 5,000 texts/s per core.

Besides the filter as shipped, lingua alone is timed on the stripped fields of a slice of the
batch under the alternatives the filter's design was chosen from, the first being the
straightforward one: every language, high accuracy, one parallel call per field.

Measured on the 2-core development machine: about 6,000 texts (fields) per second per core,
which is 2,000-2,600 examples per second per core. Lingua is about 90 % of that time; lingua
alone in its fastest mode (8 languages, low accuracy) is only ~1.6x faster and fails 8 seeds,
and the straightforward configuration (all languages) is about 5x slower. The accuracy of each
alternative is in the measurements of ``laerebogen/language.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

from laerebogen.language import LANGUAGES, LanguageFilter, language_detector, strip_non_prose
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples

TARGET_PER_CORE = 5_000
Triple = tuple[str, str, str]


def seed_batch(count: int, rng: random.Random) -> list[Triple]:
    """``count`` triples drawn from the packaged seeds' examples."""
    seeds = [
        (example.instruction, example.input, example.output)
        for example in seed_examples(load_seeds(packaged_seed_path()))
    ]
    return rng.choices(seeds, k=count)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def build(languages: tuple[Language, ...] | None, low_accuracy: bool = False) -> LanguageDetector:
    """A detector with preloaded models for ``languages`` (None: all 75)."""
    if languages is None:
        builder = LanguageDetectorBuilder.from_all_languages()
    else:
        builder = LanguageDetectorBuilder.from_languages(*languages)
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.with_preloaded_language_models().build()


def per_field_calls(detector: LanguageDetector, batch: list[Triple]) -> Callable[[], object]:
    """Each field stripped and judged alone, one parallel call per field."""

    def run() -> None:
        for field in range(3):
            texts = [strip_non_prose(triple[field]) for triple in batch]
            detector.compute_language_confidence_values_in_parallel([t for t in texts if t])

    return run


def one_call(
    detector: LanguageDetector, texts: list[str], long: LanguageDetector | None = None
) -> Callable[[], object]:
    """All texts in one parallel call; with ``long``, texts over 120 characters go to it."""

    def run() -> None:
        if long is None:
            detector.compute_language_confidence_values_in_parallel(texts)
            return
        detector.compute_language_confidence_values_in_parallel([t for t in texts if len(t) <= 120])
        long.compute_language_confidence_values_in_parallel([t for t in texts if len(t) > 120])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=int, default=20_000)
    parser.add_argument("--slice", type=int, default=1_000, help="examples for alternatives")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    batch = seed_batch(args.triples, random.Random(1))

    start = time.perf_counter()
    language_detector()
    print(
        f"detector ({len(LANGUAGES)} languages, models preloaded) built in "
        f"{time.perf_counter() - start:.2f} s; {cores} cores"
    )
    language_filter = LanguageFilter()
    language_filter.judge(batch[:1000])
    seconds = best_seconds(lambda: language_filter.judge(batch), args.repeats)
    judgements = language_filter.judge(batch)
    assert all(judgement.danish for judgement in judgements), "a seed was judged not Danish"
    stripping = best_seconds(lambda: [strip_non_prose(f) for t in batch for f in t], args.repeats)
    rate = args.triples / seconds
    fields_judged = sum(1 for triple in batch for text in triple if strip_non_prose(text))
    field_rate = fields_judged / seconds
    print(
        f"filter: {args.triples:,} examples ({fields_judged:,} texts) in {seconds:.2f} s "
        f"(stripping {stripping:.2f} s): {field_rate / cores:,.0f} texts/s per core, "
        f"{rate / cores:,.0f} examples/s per core"
    )

    part = batch[: args.slice]
    fields = [text for triple in part for text in map(strip_non_prose, triple) if text]
    shipped, every = language_detector(), build(None)
    low = build(LANGUAGES, low_accuracy=True)
    alternatives = {
        "all 75 languages, high accuracy, one call per field": per_field_calls(every, part),
        "all 75 languages, high accuracy, one call": one_call(every, fields),
        "8 languages, high accuracy, one call per field": per_field_calls(shipped, part),
        "8 languages, high accuracy, one call": one_call(shipped, fields),
        "8 languages, low accuracy over 120 characters": one_call(shipped, fields, low),
        "8 languages, low accuracy": one_call(low, fields),
        "6 languages (no Dutch, Icelandic), high accuracy": one_call(build(LANGUAGES[:6]), fields),
    }
    print(
        f"lingua alone on the {len(fields):,} texts of {args.slice:,} examples (texts/s, per core):"
    )
    for name, run in alternatives.items():
        alternative = len(fields) / best_seconds(run, args.repeats)
        print(f"  {name:52s} {alternative:7,.0f} {alternative / cores:7,.0f}")

    verdict = "met" if field_rate / cores >= TARGET_PER_CORE else "not met"
    print(f"target {TARGET_PER_CORE:,} texts/s per core: {verdict}")
    print(
        f"RESULT texts_per_s_per_core={field_rate / cores:.0f} "
        f"examples_per_s_per_core={rate / cores:.0f} cores={cores}"
    )


if __name__ == "__main__":
    main()
