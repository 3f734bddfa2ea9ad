"""What ``laerebogen seeds check`` says about a seed file: counts per category, lengths and
near-duplicate instructions."""

from __future__ import annotations

import statistics
from collections import Counter

import msgspec

from laerebogen.filtering.dedup import near_duplicate_pairs
from laerebogen.seeds import SeedTask

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
