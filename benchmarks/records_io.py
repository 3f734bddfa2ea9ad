"""Round trip of 100,000 realistic records: the store vs JSONL + gzip, measured in one run.

Records are multi-turn conversations (4 exchanges, full provenance, scores) with Danish-length
texts. The text comes from a word-bigram model of the packaged seed tasks: real Danish words,
punctuation and short phrases that recur across records, as they do in LLM output. As a worst
case the size ratio is also measured on structureless text (words drawn independently from the
seeds' word frequencies), where no compressor finds anything but the unigram statistics.

The baseline is what most data pipelines do: ``json.dumps`` per line into ``gzip.open``
(level 9), read back with ``json.loads``. The store writes resumable chunks (fsync and a
journal line per chunk) and a manifest with sha256, and verifies it on read: its figures
include that safety.

Target: round trip >= 3.5x faster and files >= 1.25x smaller than JSONL + gzip.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec

from laerebogen.records import Example, Message, Provenance, Step, record_id
from laerebogen.seeds import load_seeds, packaged_seed_path
from laerebogen.store.run_dir import RunStore

TextSource = Callable[[int, int], str]


def seed_words() -> list[str]:
    """Every whitespace-separated word of the packaged seed tasks, in order."""
    words: list[str] = []
    for task in load_seeds(packaged_seed_path()):
        for text in (task.instruction, *(f"{i.input} {i.output}" for i in task.instances)):
            words += text.split()
    return words


def bigram_text(rng: random.Random, words: list[str]) -> TextSource:
    """Texts from a word-bigram walk over ``words``: Danish phrasing, new sentences."""
    following: dict[str, list[str]] = defaultdict(list)
    for word, after in itertools.pairwise(words):
        following[word].append(after)
    starts = [after for word, after in itertools.pairwise(words) if word.endswith(".")]

    def text(low: int, high: int) -> str:
        out = [rng.choice(starts)]
        for _ in range(rng.randint(low, high) - 1):
            out.append(rng.choice(following.get(out[-1]) or starts))
        return " ".join(out)

    return text


def unigram_text(rng: random.Random, words: list[str]) -> TextSource:
    """Texts of independently drawn words: the seeds' word frequencies, no structure."""

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(words, k=rng.randint(low, high)))

    return text


def make_records(count: int, text: TextSource, rng: random.Random) -> list[Example]:
    """``count`` four-exchange conversations with realistic lengths and full provenance."""
    records = []
    for index in range(count):
        instruction, output = text(8, 40), text(40, 250)
        user_input = text(10, 80) if index % 3 == 0 else ""
        first = Example(
            id="",
            instruction=instruction,
            input=user_input,
            output=output,
            provenance=Provenance(origin="seed"),
        )
        turns = list(first.conversation())
        for _ in range(3):
            turns += [Message("user", text(5, 30)), Message("assistant", text(30, 200))]
        steps = tuple(
            Step(
                stage=stage,
                round=1,
                model="gemma-3-27b-it",
                sampling_seed=rng.getrandbits(63),
                shard=index // 500,
            )
            for stage in ("generation", "grammar", "quality", "evolution", "followups")
        )
        provenance = Provenance(
            origin="evolved",
            generation=index % 5,
            operation="deepen",
            parent_id=record_id("bench-parent", index),
            steps=steps,
        )
        records.append(
            Example(
                id=record_id("bench", index),
                instruction=instruction,
                input=user_input,
                output=output,
                messages=tuple(turns),
                provenance=provenance,
                scores={"lix": rng.uniform(20, 60), "language_confidence": rng.random()},
            )
        )
    return records


def store_round_trip(records: list[Example], directory: Path, chunk: int) -> tuple[float, int]:
    """Seconds to write and read back all records through the store, and the bytes on disk."""
    store = RunStore(directory)
    start = time.perf_counter()
    with store.open_shard("bench", 0) as writer:
        for first in range(0, len(records), chunk):
            batch = records[first : first + chunk]
            writer.write_chunk(batch, consumed=[record.id for record in batch])
        writer.finish()
    count = sum(1 for _ in store.read_records("bench", 0))
    seconds = time.perf_counter() - start
    assert count == len(records)
    return seconds, store.output_paths("bench", 0).data.stat().st_size


def jsonl_gzip_round_trip(records: list[Example], directory: Path) -> tuple[float, int]:
    """Seconds to write and read back all records as JSONL + gzip, and the bytes on disk."""
    path = directory / "records.jsonl.gz"
    start = time.perf_counter()
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(msgspec.to_builtins(record), ensure_ascii=False) + "\n")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        count = sum(1 for line in handle if json.loads(line))
    seconds = time.perf_counter() - start
    assert count == len(records)
    return seconds, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1000)
    args = parser.parse_args()

    rng = random.Random(1)
    words = seed_words()
    print(f"building {args.records:,} records from a bigram model of {len(words):,} seed words")
    records = make_records(args.records, bigram_text(rng, words), rng)
    ours, baseline = [], []
    ours_bytes = baseline_bytes = 0
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, ours_bytes = store_round_trip(records, Path(tmp) / "store", args.chunk)
            ours.append(seconds)
            seconds, baseline_bytes = jsonl_gzip_round_trip(records, Path(tmp))
            baseline.append(seconds)
        print(f"repeat {repeat + 1}: store {ours[-1]:.2f} s, jsonl+gzip {baseline[-1]:.2f} s")
    speedup = min(baseline) / min(ours)
    size_ratio = baseline_bytes / ours_bytes
    print(f"store:      {min(ours):6.2f} s  {ours_bytes / 1e6:7.1f} MB")
    print(f"jsonl+gzip: {min(baseline):6.2f} s  {baseline_bytes / 1e6:7.1f} MB")

    worst = make_records(args.records // 10, unigram_text(rng, words), rng)
    with tempfile.TemporaryDirectory() as tmp:
        worst_ratio = (
            jsonl_gzip_round_trip(worst, Path(tmp))[1]
            / store_round_trip(worst, Path(tmp) / "store", args.chunk)[1]
        )
    print(
        f"round trip {speedup:.2f}x faster (target 3.5), files {size_ratio:.2f}x smaller "
        f"(target 1.25); structureless text: {worst_ratio:.2f}x smaller"
    )
    print(
        f"RESULT records={args.records} roundtrip_speedup={speedup:.2f} "
        f"size_ratio={size_ratio:.2f} "
        f"size_ratio_structureless={worst_ratio:.2f} store_s={min(ours):.2f} "
        f"jsonl_gzip_s={min(baseline):.2f} store_mb={ours_bytes / 1e6:.1f} "
        f"jsonl_gzip_mb={baseline_bytes / 1e6:.1f}"
    )


if __name__ == "__main__":
    main()
