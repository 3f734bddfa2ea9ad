"""A stage driven with canned replies, and records short enough for the tiny model's noise."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from laerebogen.inference.requests import FinishReason, Request, Result
from laerebogen.records import Example
from laerebogen.stages.core import Context, Funnel, Outcome, Stage, drive
from tests.support.records import make_example

CONTEXT = Context(run_seed=3, round=1, shard=2, model="instruct")


RECORD = Example(
    id="rec-1",
    instruction="Forklar hvorfor himlen er blå.",
    input="",
    output='Sollyset spredes i atmosfæren, og det blå lys spredes mest.\n\n"Rayleigh-spredning".',
    provenance=make_example(0).provenance,
    scores={"lix": 30.0},
)


def run(
    stage: Stage,
    records: Sequence[Example],
    text: str,
    finish: FinishReason = "stop",
    detail: str = "",
) -> tuple[list[Outcome], Funnel, list[Request]]:
    """Drive ``stage`` with the same canned reply to every request; also return the requests."""
    sent: list[Request] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        sent.extend(requests)
        tokens = 0 if finish == "rejected" else 5
        return [Result(r.id, text, finish, 10, tokens, detail=detail) for r in requests]

    outcomes, funnel = drive(stage, records, CONTEXT, generate)
    return outcomes, funnel, sent


def short_records() -> list[Example]:
    """Records short enough that the random model's constrained noise ends in time."""
    return [
        msgspec.structs.replace(make_example(index), instruction=text, input="", output=answer)
        for index, (text, answer) in enumerate(SHORT_TASKS)
    ]


SHORT_TASKS = [
    ("Nævn tre danske øer.", "Fyn, Lolland og Bornholm."),
    ("Hvad hedder Danmarks hovedstad?", "København."),
    ("Giv et synonym for glad.", "Fornøjet."),
    ("Oversæt 'hund' til engelsk.", "Dog."),
    ("Hvor mange dage har en uge?", "En uge har syv dage."),
    ("Skriv en kort hilsen.", "Hej, og god dag!"),
]
