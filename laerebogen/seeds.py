"""Seed tasks: loading, validation and conversion into records.

The file format is the Self-Instruct/Alpaca seed schema, one JSON object per line:
``{"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification",
"metadata": {"category", "has_input"}}``. Other seed sets of this shape load too: no metadata,
metadata without ``category`` or with keys of their own (ignored), ``is_classification``
missing or null, several instances. Only the packaged seed file must give every task a
category, because its breadth is what ``seeds check`` reports and the tests hold it to.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import msgspec

from laerebogen.errors import SeedError
from laerebogen.records import Example, Provenance, Step, record_id

SEED_STAGE = "seeds"
SEED_SHAPE = '{"id", "instruction", "instances": [{"input", "output"}]}'


class Instance(msgspec.Struct, frozen=True):
    """One input/output pair of a seed task; ``input`` is empty when the task has none."""

    output: str
    input: str = ""


class SeedMetadata(msgspec.Struct, frozen=True):
    """What kind of task a seed is, for checking the breadth of a seed set; other keys that a
    seed set puts here (its source, say) are not ours to interpret and are ignored."""

    category: str | None = None
    has_input: bool | None = None


class SeedTask(msgspec.Struct, frozen=True):
    """A hand-written task used as a few-shot example in base-generation prompts."""

    id: str
    instruction: str
    instances: list[Instance]
    name: str = ""
    is_classification: bool | None = None
    metadata: SeedMetadata | None = None


def packaged_seed_path() -> Path:
    """The seed file that ships with the package."""
    return Path(str(resources.files("laerebogen") / "data" / "seed_tasks.jsonl"))


def _check_task(task: SeedTask) -> str | None:
    """The reason a decoded task is unusable, or None."""
    if not task.id.strip():
        return "empty id"
    if not task.instruction.strip():
        return "empty instruction"
    if not task.instances:
        return "no instances"
    for number, instance in enumerate(task.instances, start=1):
        if not instance.output.strip():
            return f"instance {number} has an empty output"
    if task.metadata is not None and task.metadata.has_input is not None:
        has_input = any(instance.input.strip() for instance in task.instances)
        if has_input != task.metadata.has_input:
            return f"metadata.has_input is {task.metadata.has_input} but the input says {has_input}"
    return None


def load_seeds(path: str | Path) -> list[SeedTask]:
    """Read and validate a seed file; every bad line is named in one SeedError, as
    ``file:line: what is wrong``, so that one pass fixes them all."""
    path = Path(path)
    decoder = msgspec.json.Decoder(SeedTask)
    tasks: list[SeedTask] = []
    problems: list[str] = []
    first_line_of: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SeedError(f"{path}: no such seed file") from None
    except UnicodeDecodeError as error:
        raise SeedError(f"{path}: not UTF-8 text ({error.reason})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            task = decoder.decode(line)
        except msgspec.DecodeError as error:
            problems.append(f"{path}:{number}: {_describe(error)}")
            continue
        problem = _check_task(task)
        if task.id in first_line_of:
            problem = f"duplicate id {task.id!r} (first on line {first_line_of[task.id]})"
        if problem:
            problems.append(f"{path}:{number}: {problem}")
            continue
        first_line_of[task.id] = number
        tasks.append(task)
    if problems:
        raise SeedError(
            f"{path}: {len(problems)} bad line(s); each line is one task, a JSON object "
            f"{SEED_SHAPE}\n" + "\n".join(problems)
        )
    if not tasks:
        raise SeedError(f"{path}: no seed tasks")
    return tasks


def _describe(error: msgspec.DecodeError) -> str:
    """msgspec's message in a seed file's terms: where, and what was expected."""
    message = str(error).replace("`", "")
    if message.startswith("Input data was truncated"):
        return "the JSON object does not end on this line (one task per line, no line breaks)"
    if message.startswith("JSON is malformed"):
        where = message.rpartition("(")[2].rstrip(")")
        return f"not valid JSON ({where}): expected one JSON object per line"
    if message.startswith("Object missing required field"):
        field = message.rpartition(" ")[2]
        return f"no {field!r}: a task needs id, instruction and instances"
    return message.replace(" - at $.", " at ").replace(" - at $", "")


def seed_examples(tasks: list[SeedTask]) -> Iterator[Example]:
    """One record per instance, with a stable id and ``seed`` provenance."""
    for task in tasks:
        for number, instance in enumerate(task.instances):
            yield Example(
                id=record_id(SEED_STAGE, task.id, number),
                instruction=task.instruction.strip(),
                input=instance.input.strip(),
                output=instance.output.strip(),
                provenance=Provenance(origin="seed", steps=(Step(stage=SEED_STAGE),)),
            )
