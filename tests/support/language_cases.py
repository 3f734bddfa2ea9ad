"""The language filter's test data (``tests/data/language/``) as sets of examples.

The data was written for these tests: short Danish examples of every kind a seed set holds
(questions, commands, names, numbers, code words, notations, labels), and examples in Bokmål,
Nynorsk, Swedish and English with their Danish translations, in three lengths of answer: short
(1-12 words), 1-3 sentences, and a paragraph. From them come the sets the filter is held to:
Danish examples that must pass, whole examples in a neighbour language that must not, and mixed
ones, a Danish instruction with a neighbour language's answer, that must not either.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from tests.support.paths import TEST_DATA

DATA = TEST_DATA / "language"
NEIGHBOURS = {"Bokmål": "bokmal", "Nynorsk": "nynorsk", "Swedish": "swedish", "English": "english"}
Triple = tuple[str, str, str]


class Case(NamedTuple):
    """One example of a set, with the id of the record it was made from."""

    id: str
    example: Triple


class CaseSet(NamedTuple):
    """Examples that the filter must keep (``danish``) or reject."""

    name: str
    cases: list[Case]
    danish: bool


def _records(name: str) -> list[dict[str, str]]:
    lines = (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def danish_short() -> list[dict[str, str]]:
    """The short Danish examples: ``id``, ``kind``, ``instruction``, ``input``, ``output``."""
    return _records("danish_short")


def neighbour(language: str) -> list[dict[str, str]]:
    """A neighbour language's examples: ``id``, ``length``, ``instruction``, ``output`` and
    their Danish translations ``instruction_da``, ``output_da``."""
    return _records(NEIGHBOURS[language])


def case_sets() -> list[CaseSet]:
    """Every set, Danish ones first."""
    seeds = [
        Case(example.id, (example.instruction, example.input, example.output))
        for example in seed_examples(load_seeds(packaged_seed_path()))
    ]
    short = [Case(r["id"], (r["instruction"], r["input"], r["output"])) for r in danish_short()]
    translations = [
        Case(r["id"], (r["instruction_da"], "", r["output_da"]))
        for language in NEIGHBOURS
        for r in neighbour(language)
    ]
    sets = [
        CaseSet("Danish: the packaged seeds", seeds, True),
        CaseSet("Danish: short examples", short, True),
        CaseSet("Danish: translations of the neighbours' examples", translations, True),
    ]
    for language in NEIGHBOURS:
        records = neighbour(language)
        whole = [Case(r["id"], (r["instruction"], "", r["output"])) for r in records]
        sets.append(CaseSet(f"{language}: whole examples", whole, False))
        for length, what in (("sentences", "1-3 sentences"), ("long", "a paragraph")):
            mixed = [
                Case(r["id"], (r["instruction_da"], "", r["output"]))
                for r in records
                if r["length"] == length
            ]
            sets.append(CaseSet(f"{language}: {what} under a Danish instruction", mixed, False))
    return sets
