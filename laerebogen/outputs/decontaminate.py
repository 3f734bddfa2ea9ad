"""A finished run's conversations checked against evaluation sets, and what leaves the dataset.

The benchmarks of a run are those of its config's ``[decontamination] files`` and those added
with ``laerebogen decontaminate`` (kept in the run, so every later export applies them too).
Every export decontaminates anew: the final records are read once more and matched as
:mod:`laerebogen.decontamination.ngrams` describes; a contaminated conversation leaves both the
complete and the filtered version, and the card and ``stats.json`` say against what, with which
settings, and how many conversations each benchmark removed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import BenchmarkFile, Config, Decontamination
from laerebogen.decontamination.benchmarks import read_benchmark
from laerebogen.decontamination.ngrams import BenchmarkIndex, Item, Rule, find_matches
from laerebogen.log import Log, stderr_line
from laerebogen.pipeline.plan import final_records
from laerebogen.records import Example
from laerebogen.store.run_dir import RunStore

AGAINST_FILE = "decontamination/against.json"  # benchmarks added by `laerebogen decontaminate`
REPORT_FILE = "decontamination.json"  # what `laerebogen decontaminate --report-only` writes
TOP_ITEMS = 5  # most matched items per benchmark, by id, in the card


class Against(msgspec.Struct, frozen=True):
    """The benchmarks ``laerebogen decontaminate`` added to a run."""

    files: list[BenchmarkFile]


class MatchedItem(msgspec.Struct, frozen=True):
    """An item of a benchmark and how many conversations share an n-gram with it."""

    id: str
    conversations: int


class BenchmarkStats(msgspec.Struct, frozen=True):
    """What one benchmark was and what it matched."""

    name: str
    path: str
    items: int
    fields: list[str]  # the fields its items' texts came from
    unmatchable: int  # items without a field of `min_tokens` words: they cannot match
    contaminated: int  # conversations sharing an n-gram with one of its items
    top_items: list[MatchedItem]  # the most matched items, most first


class DecontaminationStats(msgspec.Struct, frozen=True):
    """A run's decontamination: settings, benchmarks, and what it found and removed."""

    ngram: int
    answers: bool  # whether answers were matched, besides the user's messages
    short_share: float
    min_tokens: int
    common_above: float  # an n-gram in more conversations than this did not count
    common_ngrams: int  # distinct n-grams that did not count for being common
    checked: int  # conversations checked
    contaminated: int  # conversations sharing a counting n-gram with any benchmark
    removed: int  # conversations left out of the dataset (0 when only reported)
    benchmarks: list[BenchmarkStats]


class Outcome(NamedTuple):
    """A decontamination: its statistics (None without benchmarks) and the ids to leave out."""

    stats: DecontaminationStats | None
    removed: frozenset[str]


NOT_DECONTAMINATED = Outcome(None, frozenset())


def check_benchmarks(config: Config) -> None:
    """Read every benchmark of the config once, so that a wrong path or field stops a run with
    one line before it starts, not at its export hours later."""
    for file in config.decontamination.benchmarks():
        read_benchmark(file.file_path(), file.name, file.fields, file.id_field)


def run_benchmarks(store: RunStore, config: Config) -> list[BenchmarkFile]:
    """The benchmarks of the run: its config's, then those added to it, each once."""
    added = store.read_state(AGAINST_FILE, Against)
    return _unique([*config.decontamination.benchmarks(), *(added.files if added else ())])


def add_benchmarks(store: RunStore, config: Config, files: Sequence[BenchmarkFile]) -> None:
    """Keep ``files`` among the run's benchmarks for every later export."""
    added = store.read_state(AGAINST_FILE, Against)
    known = run_benchmarks(store, config)
    new = _unique([*known, *files])[len(known) :]
    if new:
        store.write_state(AGAINST_FILE, Against([*(added.files if added else ()), *new]))


def _unique(files: Sequence[BenchmarkFile]) -> list[BenchmarkFile]:
    """``files`` without repeats (the same path read the same way), in order."""
    return list({msgspec.json.encode(file): file for file in files}.values())


def conversation_texts(record: Example, answers: bool) -> list[str]:
    """The texts of ``record`` that are matched: the user's messages, and answers if asked."""
    roles = ("user", "assistant") if answers else ("user",)
    return [message.content for message in record.conversation() if message.role in roles]


def decontaminate(
    store: RunStore,
    config: Config,
    benchmarks: Sequence[BenchmarkFile],
    *,
    remove: bool = True,
    log: Log = stderr_line,
) -> Outcome:
    """Match the run's final records against ``benchmarks``; with ``remove``, the contaminated
    conversations' ids are the outcome's to leave out."""
    if not benchmarks:
        return NOT_DECONTAMINATED
    settings = config.decontamination
    started = time.monotonic()
    read = [
        read_benchmark(file.file_path(), file.name, file.fields, file.id_field)
        for file in benchmarks
    ]
    owners = [number for number, benchmark in enumerate(read) for _ in benchmark.items]
    firsts = list(accumulate((len(benchmark.items) for benchmark in read), initial=0))
    index = BenchmarkIndex.build((item for b in read for item in b.items), rule_of(settings))
    log(
        f"decontamination: {len(owners)} items of {len(read)} benchmark(s) hashed "
        f"({time.monotonic() - started:.1f} s); matching the conversations"
    )
    ids: list[str] = []

    def texts() -> Iterator[list[str]]:
        for record in final_records(store, config):
            ids.append(record.id)
            if len(ids) % 50_000 == 0:
                log(f"decontamination: {len(ids)} conversations looked up")
            yield conversation_texts(record, settings.answers)

    matches = find_matches(index, texts())
    per_benchmark: list[set[int]] = [set() for _ in read]
    item_counts: Counter[int] = Counter()
    for conversation, items in matches.items.items():
        item_counts.update(items)
        for item in items:
            per_benchmark[owners[item]].add(conversation)
    unmatchable = Counter(owners[item] for item in index.unmatched)
    stats = DecontaminationStats(
        ngram=settings.ngram,
        answers=settings.answers,
        short_share=settings.short_share,
        min_tokens=settings.min_tokens,
        common_above=index.rule.common_above(matches.conversations),
        common_ngrams=matches.common,
        checked=matches.conversations,
        contaminated=len(matches.items),
        removed=len(matches.items) if remove else 0,
        benchmarks=[
            BenchmarkStats(
                name=benchmark.name,
                path=str(benchmark.path),
                items=len(benchmark.items),
                fields=benchmark.fields,
                unmatchable=unmatchable[number],
                contaminated=len(per_benchmark[number]),
                top_items=_top_items(benchmark.items, first, item_counts),
            )
            for number, (benchmark, first) in enumerate(zip(read, firsts, strict=False))
        ],
    )
    log(
        f"decontamination: {stats.contaminated} of {stats.checked} conversations contaminated "
        f"({time.monotonic() - started:.1f} s)"
    )
    removed = frozenset(ids[number] for number in matches.items) if remove else frozenset()
    return Outcome(stats, removed)


def rule_of(settings: Decontamination) -> Rule:
    """The matching rule of a config's ``[decontamination]`` table."""
    return Rule(
        settings.ngram,
        settings.short_share,
        settings.min_tokens,
        settings.common_share,
        settings.common_min,
    )


def _top_items(items: Sequence[Item], first: int, counts: Counter[int]) -> list[MatchedItem]:
    """The :data:`TOP_ITEMS` of a benchmark's ``items`` (numbered from ``first`` in the
    index) in most conversations, ties by their order in the file."""
    matched = [(-counts[first + k], k) for k in range(len(items)) if counts[first + k]]
    return [MatchedItem(items[k].id, -negative) for negative, k in sorted(matched)[:TOP_ITEMS]]


def write_decontamination_report(store: RunStore, stats: DecontaminationStats) -> str:
    """Write ``stats`` as the run's :data:`REPORT_FILE`; its path."""
    return str(store.write_state(REPORT_FILE, stats))


def decontamination_summary(stats: DecontaminationStats | None) -> str:
    """What a decontamination found, a line per benchmark."""
    if stats is None:
        return "decontamination: no benchmark files (config [decontamination] files, --against)"
    lines = [
        f"decontamination ({stats.ngram}-grams of the user's messages"
        f"{' and answers' if stats.answers else ''}): {stats.contaminated} of {stats.checked} "
        f"conversations contaminated, {stats.removed} removed"
    ]
    for benchmark in stats.benchmarks:
        top = ", ".join(f"{item.id} ({item.conversations})" for item in benchmark.top_items)
        lines.append(
            f"  {benchmark.name}: {benchmark.items} items, {benchmark.contaminated} "
            f"conversations{f'; most matched: {top}' if top else ''}"
        )
    return "\n".join(lines)
