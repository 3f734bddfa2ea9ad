"""The merge job's screen (heuristics, then Danish detection): speed, and what it keeps.

Speed, on the packaged seeds' 176 examples drawn with replacement (Danish instructions, inputs
and answers with the seeds' mix of lengths, code, tables and translation tasks):

* the whole screen of a generation merge, in examples per second per core, beside lingua alone
  on the same examples' stripped fields in one parallel call, measured in the same run (lingua
  is most of the screen's cost, so the ratio says what the rule costs on top of it);
* the follow-up merge, the recipe's largest (about 175,000 conversations in the full recipe):
  conversations of four exchanges built from the seeds, of which the merge judges the three
  added ones, in conversations per second per core, and the projected minutes for 175,000 on
  the ``cpu_job`` of the ``gemma-27b`` config. Target: at most 5 minutes. The seeds' answers
  are shorter than a large model's, but a long answer costs no more: only its last window is
  read.

Figures per core divide by ``os.cpu_count()``; lingua's parallel calls use every core.

What it keeps: lingua alone on every Danish field of the test data by its letters of language
words (why ``ALONE_LETTERS`` is what it is), and the confusion table of the filter on the test
data of ``tests/data/language/`` (targets: Danish kept >= 98 %, whole examples in a neighbour
language accepted <= 2 %, a neighbour language's answer of 1-3 sentences under a Danish
instruction accepted <= 10 %).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' data sets

from laerebogen.config.loading import load_config
from laerebogen.filtering.language import ALONE_LETTERS, DANISH, LanguageFilter, language_detector
from laerebogen.filtering.prose import language_words, strip_non_prose
from laerebogen.filtering.screening import Screener
from laerebogen.pipeline.merge import screen as merge_screen
from laerebogen.records import Example, Message, Provenance
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from tests.support.language_cases import case_sets

FOLLOWUP_MERGE = 175_000
TARGET_MINUTES = 5.0
Triple = tuple[str, str, str]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def conversations(seeds: list[Example], count: int, rng: random.Random) -> list[Example]:
    """``count`` conversations: a seed's exchange and three more seeds' as follow-ups."""
    made = []
    for number in range(count):
        first, *more = rng.sample(seeds, 4)
        messages = [*first.conversation()]
        for seed in more:
            messages += [Message("user", seed.instruction), Message("assistant", seed.output)]
        made.append(
            Example(
                id=str(number),
                instruction=first.instruction,
                input=first.input,
                output=first.output,
                messages=tuple(messages),
                provenance=Provenance(origin="self-instruct"),
            )
        )
    return made


def letters_table(language_filter: LanguageFilter) -> None:
    """Lingua alone on every Danish field of the test data, by letters of language words."""
    fields = [
        text
        for cases in case_sets()
        if cases.danish
        for case in cases.cases
        for text in case.example
    ]
    words = [language_words(strip_non_prose(text)) for text in fields]
    texts = [" ".join(found) for found in words if len(found) >= 2]
    values = language_filter.detector.compute_language_confidence_values_in_parallel(texts)
    total: Counter[int] = Counter()
    danish: Counter[int] = Counter()
    for text, confidences in zip(texts, values, strict=True):
        bucket = min(sum(c.isalpha() for c in text) // 20 * 20, 120)
        total[bucket] += 1
        danish[bucket] += confidences[0].language == DANISH
    print(f"lingua alone on Danish fields, by letters of language words ({ALONE_LETTERS=}):")
    for bucket in sorted(total):
        label = f"{bucket}+" if bucket == 120 else f"{bucket}-{bucket + 19}"
        share = danish[bucket] / total[bucket]
        print(f"  {label:>8} letters: {total[bucket]:5d} fields, Danish first {share:6.1%}")


def confusion(language_filter: LanguageFilter) -> dict[str, float]:
    """The confusion table on the test data; returns the headline shares."""
    print(f"{'set':62s} {'examples':>8s} {'kept':>6s} {'rejected':>8s} {'kept %':>7s}")
    sums = {"danish": [0, 0], "whole": [0, 0], "mixed": [0, 0]}
    for cases in case_sets():
        judgements = language_filter.judge([case.example for case in cases.cases])
        kept = sum(judgement.danish for judgement in judgements)
        print(
            f"{cases.name:62s} {len(judgements):8d} {kept:6d} {len(judgements) - kept:8d} "
            f"{kept / len(judgements):7.1%}"
        )
        kind = "danish" if cases.danish else "whole" if "whole" in cases.name else "mixed"
        if "1-3 sentences" in cases.name or kind != "mixed":
            sums[kind][0] += kept
            sums[kind][1] += len(judgements)
    return {kind: 100 * kept / total for kind, (kept, total) in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=8_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rng = random.Random(1)
    seeds = list(seed_examples(load_seeds(packaged_seed_path())))
    batch: list[Triple] = [
        (e.instruction, e.input, e.output) for e in rng.choices(seeds, k=args.triples)
    ]

    start = time.perf_counter()
    detector = language_detector()
    print(f"detector built in {time.perf_counter() - start:.2f} s; {cores} cores")
    screener = Screener()
    screener.screen(batch[:500])
    seconds = best_seconds(lambda: screener.screen(batch), args.repeats)
    assert all(s.rejection is None for s in screener.screen(batch)), "a seed was rejected"
    fields = [text for triple in batch for text in map(strip_non_prose, triple) if text]
    lingua = best_seconds(
        lambda: detector.compute_language_confidence_values_in_parallel(fields), args.repeats
    )
    rate = args.triples / seconds / cores
    print(
        f"generation merge screen: {args.triples:,} examples in {seconds:.2f} s, "
        f"{rate:,.0f} examples/s per core; lingua alone on their {len(fields):,} stripped "
        f"fields {lingua:.2f} s (screen/lingua {seconds / lingua:.2f})"
    )

    config = load_config("gemma-27b")
    made = conversations(seeds, args.conversations, rng)
    merge_screen(made[:200], {}, config, "followups")
    followups = best_seconds(lambda: merge_screen(made, {}, config, "followups"), args.repeats)
    per_core = len(made) / followups / cores
    cpu_job = config.slurm.cpu_job.cpus
    minutes = FOLLOWUP_MERGE / (per_core * cpu_job) / 60
    verdict = "met" if minutes <= TARGET_MINUTES else "not met"
    print(
        f"follow-up merge screen: {len(made):,} conversations in {followups:.2f} s, "
        f"{per_core:,.0f} conversations/s per core; {FOLLOWUP_MERGE:,} on the gemma-27b "
        f"cpu_job ({cpu_job} cores): {minutes:.2f} minutes (target {TARGET_MINUTES:g}: {verdict})"
    )

    language_filter = LanguageFilter()
    letters_table(language_filter)
    shares = confusion(language_filter)
    print(
        f"Danish kept {shares['danish']:.1f} % (target >= 98), whole neighbour-language "
        f"examples accepted {shares['whole']:.1f} % (<= 2), answers of 1-3 sentences under a "
        f"Danish instruction accepted {shares['mixed']:.1f} % (<= 10)"
    )
    print(
        f"RESULT examples_per_s_per_core={rate:.0f} screen_vs_lingua={seconds / lingua:.2f} "
        f"followup_minutes_175000={minutes:.2f} danish_kept_pct={shares['danish']:.1f} "
        f"whole_accepted_pct={shares['whole']:.1f} mixed_accepted_pct={shares['mixed']:.1f} "
        f"cores={cores}"
    )


if __name__ == "__main__":
    main()
