"""The stage protocol: works driven in lockstep, outcomes in order, funnels, seeds."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from laerebogen.config.schema import Sampling
from laerebogen.inference.requests import CompletionRequest, Request, Result
from laerebogen.records import Example, Rejection
from laerebogen.stages.core import Context, Funnel, Outcome, Stage, Work, call_name, drive
from tests.support.records import make_example

SAMPLING = Sampling(max_tokens=8)


class Echo(Stage):
    """Record i makes i calls; it is kept when every answer says "ok"."""

    name = "echo"
    role = "instruct"

    def process(self, record: Example, context: Context) -> Work:
        calls = int(record.input or 0)
        answers = []
        for call in range(calls):
            seed = context.seed(self.name, record.id, str(call))
            result = yield CompletionRequest(
                id=f"{record.id}/{call}", prompt=record.instruction, sampling=SAMPLING, seed=seed
            )
            answers.append(result.text)
        if all(answer == "ok" for answer in answers):
            return Outcome(records=(record.with_step(context.step(self.name)),))
        return Outcome(rejections=(Rejection("not_ok", source_id=record.id),))


def canned(texts: dict[str, str]) -> tuple[list[list[str]], object]:
    batches: list[list[str]] = []

    def generate(requests: Sequence[Request]) -> list[Result]:
        batches.append([request.id for request in requests])
        return [
            Result(request.id, texts.get(request.id, "ok"), "stop", 3, 1) for request in requests
        ]

    return batches, generate


def records(calls: list[int]) -> list[Example]:
    return [
        Example(
            id=f"r{index}",
            instruction="Sig ok.",
            input=str(count),
            provenance=make_example(0).provenance,
        )
        for index, count in enumerate(calls)
    ]


def test_drive_batches_each_round_of_calls_and_keeps_record_order() -> None:
    batches, generate = canned({"r2/1": "nej"})
    outcomes, funnel = drive(Echo(), records([0, 1, 2, 3]), Context(run_seed=1), generate)
    assert batches == [["r1/0", "r2/0", "r3/0"], ["r2/1", "r3/1"], ["r3/2"]]
    assert [len(outcome.records) for outcome in outcomes] == [1, 1, 0, 1]
    assert outcomes[2].rejections == (Rejection("not_ok", source_id="r2"),)
    assert funnel == Funnel(
        inputs=4,
        requests=6,
        calls={"0": 3, "1": 2, "2": 1},  # Echo names its calls by number
        finished={"stop": 6},
        records=3,
        rejected={"not_ok": 1},
        prompt_tokens=18,
        completion_tokens=6,
    )


def test_a_request_is_counted_by_its_call_without_turn_or_retry() -> None:
    assert call_name("r1/tasks", "r1") == "tasks"
    assert call_name("r1/answer-2/1", "r1") == "answer"  # a follow-up's turn 3, try 2
    assert call_name("r1/annotate/0", "r1") == "annotate"
    assert call_name("g-1/x-y/evolve", "g-1/x-y") == "evolve"  # ids may hold slashes
    assert call_name("r1/in-depth", "r1") == "in-depth"  # a name, not a turn


def test_records_get_a_provenance_step_from_the_context() -> None:
    _, generate = canned({})
    context = Context(run_seed=1, round=2, shard=5, attempt=1, model="tiny")
    [outcome] = drive(Echo(), records([1]), context, generate)[0]
    step = outcome.records[0].provenance.steps[-1]
    assert (step.stage, step.round, step.shard, step.attempt, step.model) == (
        "echo", 2, 5, 1, "tiny",
    )  # fmt: skip


def test_seeds_differ_per_call_and_retry_and_repeat_in_reruns_and_retried_shards() -> None:
    context = Context(run_seed=1)
    seeds = {
        context.seed("echo", "r1"),
        context.seed("echo", "r1", "answer"),
        context.seed("echo", "r1", "answer", retry=1),
        Context(run_seed=1, round=1).seed("echo", "r1", "answer"),
    }
    assert len(seeds) == 4
    assert context.seed("echo", "r1", "answer") == Context(run_seed=1).seed("echo", "r1", "answer")
    retried = Context(run_seed=1, attempt=1)
    assert retried.seed("echo", "r1", "answer") == context.seed("echo", "r1", "answer")


def test_a_work_that_returns_no_outcome_is_a_bug_not_a_silent_loss() -> None:
    class Broken(Echo):
        def process(self, record: Example, context: Context) -> Work:  # type: ignore[override]
            yield CompletionRequest(id="x", prompt="", sampling=SAMPLING, seed=0)

    _, generate = canned({})
    with pytest.raises(TypeError, match="must return an Outcome"):
        drive(Broken(), records([1]), Context(run_seed=1), generate)
