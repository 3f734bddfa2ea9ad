"""Record factories and other helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from laerebogen.records import Example, Message, Provenance, Rejection, Step, record_id
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


def hold_driver_lock(run: Path) -> subprocess.Popen[str]:
    """Another process that takes the run's driver lock and keeps it until it is killed."""
    code = (
        "import sys, time\nfrom laerebogen.store.run_dir import RunStore\n"
        "with RunStore(sys.argv[1]).driver_lock():\n    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def consumed(writer: ShardWriter, input_id: str) -> bool:
    """Whether a committed chunk of ``writer`` consumed the input ``input_id``."""
    probe = msgspec.structs.replace(make_example(0), id=input_id)
    return not list(writer.pending([probe]))
