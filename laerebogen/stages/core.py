"""What a stage is: per-record logic that asks the engine and turns answers into records.

A stage knows nothing of SLURM, files or vLLM. For each input record it runs a *work*: a
generator that yields one :class:`~laerebogen.inference.requests.Request` at a time, receives its
:class:`~laerebogen.inference.requests.Result`, and finally returns an :class:`Outcome` (new
records and rejections with reasons). Multi-call recipes (evolve, judge, answer; a follow-up
question, then its answer, with a retry) read as straight-line code, and :func:`drive` runs the
works of a whole chunk in lockstep, so every round of calls is one engine batch. Tests drive works
with canned results; the shard runner drives them with the real engine. A :class:`CpuStage`
asks no model: it turns a whole chunk into outcomes with the CPUs of its shard.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from typing import ClassVar

import msgspec

from laerebogen.inference.requests import Request, Result, sampling_seed
from laerebogen.records import Example, Rejection, Step

Work = Generator[Request, Result, "Outcome"]
Generate = Callable[[Sequence[Request]], list[Result]]


class Outcome(msgspec.Struct, frozen=True):
    """What one input record became: records to keep and candidates rejected with reasons."""

    records: tuple[Example, ...] = ()
    rejections: tuple[Rejection, ...] = ()


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """Where a stage runs: the run's seed, the round, shard and attempt, and the model.

    Stages take their sampling seeds and provenance steps from here, so that a rerun of a
    shard reproduces its samples and every record says where it was made.
    """

    run_seed: int
    round: int = 0
    shard: int = 0
    attempt: int = 0
    model: str = ""

    def seed(self, stage: str, record_id: str, call: str = "", retry: int = 0) -> int:
        """The sampling seed of one call: ``call`` names it within the record's work and
        ``retry`` counts its retries there. The shard's attempt is left out: a retried shard
        reproduces the samples of the attempt it replaces."""
        key = f"{record_id}/{call}/{retry}" if call or retry else record_id
        return sampling_seed(self.run_seed, stage, self.round, key)

    def step(self, stage: str, seed: int | None = None, note: str = "") -> Step:
        """The provenance step of a record made or changed here."""
        return Step(
            stage=stage,
            round=self.round,
            model=self.model,
            sampling_seed=seed,
            shard=self.shard,
            attempt=self.attempt,
            note=note,
        )


class Stage(ABC):
    """One step of the recipe, run with a model (the config names which). Subclasses set
    ``name`` and implement ``process``."""

    name: ClassVar[str]

    @abstractmethod
    def process(self, record: Example, context: Context) -> Work:
        """The work that turns ``record`` into an :class:`Outcome`."""


class CpuStage(ABC):
    """A step's stage that runs no model: the shard runner hands it each chunk whole, so
    that it can spread the work over the shard's CPUs."""

    name: ClassVar[str]

    @abstractmethod
    def process_chunk(self, records: Sequence[Example], context: Context) -> list[Outcome]:
        """One outcome per record of ``records``, in order."""


class Funnel(msgspec.Struct, kw_only=True):
    """Counts of one stage run, for the manifest and the dataset card.

    ``finished`` counts results by finish reason (``rejected`` means the engine refused the
    prompt); ``rejected`` counts rejections by reason; ``calls`` counts requests by the
    stage's name for them (``tasks``, ``answer``, ``judge``, ...).
    """

    inputs: int = 0
    requests: int = 0
    calls: dict[str, int] = {}
    finished: dict[str, int] = {}
    records: int = 0
    rejected: dict[str, int] = {}
    prompt_tokens: int = 0
    completion_tokens: int = 0


def drive(
    stage: Stage, records: Sequence[Example], context: Context, generate: Generate
) -> tuple[list[Outcome], Funnel]:
    """Run ``stage`` on ``records``: each round of pending calls is one ``generate`` batch.

    Returns one outcome per record, in order, and the funnel of the run.
    """
    outcomes: list[Outcome | None] = [None] * len(records)
    works: dict[int, Work] = {}
    pending: dict[int, Request] = {}
    for index, record in enumerate(records):
        work = stage.process(record, context)
        works[index] = work
        _advance(index, work, None, pending, outcomes)
    finished: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    funnel = Funnel(inputs=len(records))
    while pending:
        indices = list(pending)
        results = generate([pending[index] for index in indices])
        funnel.requests += len(indices)
        calls.update(call_name(pending[index].id, records[index].id) for index in indices)
        pending = {}
        for index, result in zip(indices, results, strict=True):
            finished[result.finish_reason] += 1
            funnel.prompt_tokens += result.prompt_tokens
            funnel.completion_tokens += result.completion_tokens
            _advance(index, works[index], result, pending, outcomes)
    done = [outcome for outcome in outcomes if outcome is not None]
    funnel.finished = dict(finished)
    funnel.calls = dict(sorted(calls.items()))
    funnel.records = sum(len(outcome.records) for outcome in done)
    funnel.rejected = dict(
        Counter(rejection.reason for outcome in done for rejection in outcome.rejections)
    )
    return done, funnel


def call_name(request_id: str, record_id: str) -> str:
    """What a request asks for, from its id ``<record id>/<call>[-<turn>][/<retry>]``:
    ``answer-2/1`` is an ``answer``."""
    call = request_id.removeprefix(f"{record_id}/").split("/")[0]
    name, _, turn = call.rpartition("-")
    return name if name and turn.isdigit() else call


def _advance(
    index: int,
    work: Work,
    result: Result | None,
    pending: dict[int, Request],
    outcomes: list[Outcome | None],
) -> None:
    """Send ``result`` into ``work`` (start it when None); note its next call or its outcome."""
    try:
        pending[index] = next(work) if result is None else work.send(result)
    except StopIteration as stop:
        if not isinstance(stop.value, Outcome):
            raise TypeError(f"a stage's work must return an Outcome, got {stop.value!r}") from None
        outcomes[index] = stop.value
