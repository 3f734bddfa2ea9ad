"""Record factories and other helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from laerebogen.records import Example, Message, Provenance, Rejection, Step, record_id
from laerebogen.store.atomic import atomic_write
from laerebogen.store.run_dir import RunStore
from laerebogen.store.shards import ShardWriter


def make_example(index: int, *, stage: str = "generation", followups: bool = False) -> Example:
    """A realistic record: Danish text, a provenance step and optionally a conversation."""
    instruction = f"Forklar kort, hvorfor æbler, pærer og blåbær nr. {index} er sunde."
    output = "Frugt indeholder fibre, vitaminer og antioxidanter. " * (1 + index % 3)
    example = Example(
        id=record_id("test", stage, index),
        instruction=instruction,
        input="" if index % 3 else f"Kilde {index}: Sundhedsstyrelsen anbefaler 600 g om dagen.",
        output=output,
        provenance=Provenance(
            origin="self-instruct",
            steps=(Step(stage=stage, round=1, model="tiny", sampling_seed=index, shard=0),),
        ),
        scores={"lix": 31.5 + index},
    )
    if followups:
        extra = (
            Message("user", "Kan du give et eksempel?"),
            Message("assistant", "Ja, fx et æble."),
        )
        example = Example(
            id=example.id,
            instruction=example.instruction,
            input=example.input,
            output=example.output,
            provenance=example.provenance,
            messages=(*example.conversation(), *extra),
        )
    return example


def make_rejection(index: int, reason: str = "not_danish") -> Rejection:
    """A rejection with its parsed candidate."""
    return Rejection(reason=reason, source_id=f"input-{index}", record=make_example(10_000 + index))


def consumed(writer: ShardWriter, input_id: str) -> bool:
    """Whether a committed chunk of ``writer`` consumed the input ``input_id``."""
    probe = msgspec.structs.replace(make_example(0), id=input_id)
    return not list(writer.pending([probe]))


def write_shard(store: RunStore, stage: str, index: int, count: int, chunk: int = 10) -> None:
    with store.open_shard(stage, index) as writer:
        for start in range(0, count, chunk):
            ids = range(start, min(start + chunk, count))
            writer.write_chunk(
                [make_example(index * 100_000 + i) for i in ids],
                [make_rejection(i) for i in ids if i % 4 == 0],
                consumed=[f"in-{i}" for i in ids],
                prompt_tokens=10 * len(ids),
                completion_tokens=20 * len(ids),
            )
        writer.finish()


def examples(stage: str, count: int) -> list[Example]:
    """``count`` records made by ``stage``."""
    return [make_example(index, stage=stage) for index in range(count)]


def finish_shard(
    store: RunStore,
    step: str,
    index: int,
    outputs: int,
    reasons: Sequence[str] = (),
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    wall_seconds: float = 0.0,
    requests: dict[str, int] | None = None,
) -> None:
    """Finish a shard as a shard job does, then fix its wall time for exact GPU-hours."""
    consumed = [record.id for record in store.read_inputs(step, index)]
    rejections = [make_rejection(i, reason) for i, reason in enumerate(reasons)]
    with store.open_shard(step, index) as writer:
        writer.write_chunk(
            examples(f"{step}-{index}", outputs),
            rejections,
            consumed,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            requests=requests,
        )
        manifest = writer.finish()
    fixed = msgspec.structs.replace(manifest, wall_seconds=wall_seconds)
    atomic_write(store.output_paths(step, index).manifest, msgspec.json.encode(fixed))
