"""What ``laerebogen seeds check`` says about a seed file: counts per category, lengths and
near-duplicate instructions."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import msgspec

from laerebogen.filtering.dedup import near_duplicate_pairs
from laerebogen.seeds import SeedTask, load_seeds, packaged_seed_path

UNCATEGORISED = "(none)"


class SeedReport(msgspec.Struct, frozen=True):
    """What ``laerebogen seeds check`` prints about a seed file."""

    tasks: int
    instances: int
    by_category: dict[str, int]
    uncategorised: int
    input_share: float
    words: dict[str, dict[str, float]]
    near_duplicates: list[tuple[str, str, float]]


def _category(task: SeedTask) -> str:
    category = task.metadata.category if task.metadata else None
    return category or UNCATEGORISED


def _word_stats(counts: list[int]) -> dict[str, float]:
    if not counts:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(counts), "median": statistics.median(counts), "max": max(counts)}


def check_seeds(tasks: list[SeedTask], threshold: float = 0.7) -> SeedReport:
    """Counts, length statistics and near-duplicate instruction pairs of a seed set."""
    instances = [instance for task in tasks for instance in task.instances]
    categories = Counter(_category(task) for task in tasks)
    with_input = sum(1 for instance in instances if instance.input.strip())
    pairs = near_duplicate_pairs([task.instruction for task in tasks], threshold)
    return SeedReport(
        tasks=len(tasks),
        instances=len(instances),
        by_category=dict(sorted(categories.items())),
        uncategorised=categories[UNCATEGORISED],
        input_share=round(with_input / len(instances), 3),
        words={
            "instruction": _word_stats([len(task.instruction.split()) for task in tasks]),
            "input": _word_stats([len(i.input.split()) for i in instances if i.input.strip()]),
            "output": _word_stats([len(instance.output.split()) for instance in instances]),
        },
        near_duplicates=[(tasks[i].id, tasks[j].id, round(score, 3)) for i, j, score in pairs],
    )


def check_seed_file(path: Path | None, threshold: float = 0.7) -> tuple[str, str | None]:
    """What ``seeds check`` prints about a seed file (default: the packaged seeds), and why the
    check fails if it does: near-duplicate instructions, or a packaged task without category."""
    seed_file = path or packaged_seed_path()
    report = check_seeds(load_seeds(seed_file), threshold)
    lines = [
        f"{seed_file}: {report.tasks} tasks, {report.instances} instances, "
        f"{report.input_share:.1%} with input",
        "by category:",
        *(f"  {category:<20} {count:>4}" for category, count in report.by_category.items()),
        "words (min / median / max):",
        *(
            f"  {field:<12} {stats['min']:g} / {stats['median']:g} / {stats['max']:g}"
            for field, stats in report.words.items()
        ),
    ]
    if report.near_duplicates:
        lines.append(f"near-duplicate instructions (ROUGE-L > {threshold}):")
        lines += [f"  {a} ~ {b}: {score:.3f}" for a, b, score in report.near_duplicates]
        return "\n".join(lines), f"{len(report.near_duplicates)} near-duplicate instruction pairs"
    lines.append(f"near-duplicate instructions (ROUGE-L > {threshold}): none")
    failure = None
    if report.uncategorised and seed_file.resolve() == packaged_seed_path().resolve():
        failure = (
            f"{seed_file}: {report.uncategorised} tasks without metadata.category; every "
            "packaged seed names its category"
        )
    return "\n".join(lines), failure
