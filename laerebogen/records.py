"""Typed records that flow between stages, with their provenance.

Every record keeps the chain of steps that made it (stage, round, model, sampling seed,
shard, attempt), so any example in the final dataset can be traced to the prompt and the
array task that produced it. Structs are frozen: a stage makes a new record with
``msgspec.structs.replace`` instead of mutating what it read.
"""

from __future__ import annotations

import hashlib
from typing import Literal, get_args

import msgspec

Role = Literal["system", "user", "assistant"]
# How a record's first exchange was written: a seed, a base source's stage, an import, or an
# evolution of another record.
Origin = Literal["seed", "self-instruct", "magpie", "grounded", "imported", "evolved"]
# The source of every record made before this field existed, and of base generation's.
SELF_INSTRUCT = "self_instruct"
# An imported dataset's records have the source ``import:<name>``.
IMPORT_PREFIX = "import:"


# The score the merge gives each kept record in ``Example.scores``: the language filter's
# confidence that it is Danish.
LANGUAGE_SCORE = "danish_confidence"


class Message(msgspec.Struct, frozen=True):
    """One turn of a conversation."""

    role: Role
    content: str


class Step(msgspec.Struct, frozen=True, omit_defaults=True):
    """One processing step a record went through; ``note`` says what it did (e.g. corrected)."""

    stage: str
    round: int = 0
    model: str = ""
    sampling_seed: int | None = None
    shard: int | None = None
    attempt: int = 0
    note: str = ""


class Passage(msgspec.Struct, frozen=True):
    """A passage of a grounded source's corpus: its file and its id within the corpus."""

    file: str
    id: str


class Provenance(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where a record comes from: its origin, evolution generation, parent and steps.

    ``source`` names the source of its task (``self_instruct``, ``magpie``, ``grounded`` or
    ``import:<name>``) and stays with every record derived from it; ``passage`` is the corpus
    passage a grounded task rests on.
    """

    origin: Origin
    generation: int = 0
    operation: str | None = None
    parent_id: str | None = None
    steps: tuple[Step, ...] = ()
    source: str = SELF_INSTRUCT
    passage: Passage | None = None


# The annotation's verdict on harm when a conversation is harmless; any other value names the
# hazard category of the taxonomy.
HARMLESS = "nej"


class Annotation(msgspec.Struct, frozen=True):
    """The instruct model's judgement of a whole conversation (the ``annotate`` step).

    Labels are the taxonomy's Danish words; ``difficulty`` and ``quality`` run from 1 to 5,
    ``reason`` is the one-sentence reason for ``quality``.
    """

    domain: str
    task_type: str
    difficulty: int
    quality: int
    reason: str
    harm: str

    @property
    def harmful(self) -> bool:
        """Whether the model judged the conversation harmful."""
        return self.harm != HARMLESS


# How a code block's run ended (``not_checked``: a language the sandbox does not run); the
# first four are failures, which leave a conversation out of the filtered version.
CodeOutcome = Literal[
    "syntax_error", "exception", "timeout", "resource_limit", "ok", "not_verifiable", "not_checked"
]
CODE_OUTCOMES: tuple[CodeOutcome, ...] = get_args(CodeOutcome)
CODE_FAILURES: tuple[CodeOutcome, ...] = CODE_OUTCOMES[:4]


class BlockCheck(msgspec.Struct, frozen=True, omit_defaults=True):
    """The code_check step's result for one code block of an assistant message.

    ``message`` is the message's index in the conversation, ``block`` the block's among the
    message's blocks; ``detail`` names the exception type, the limit or what the code needs.
    """

    message: int
    block: int
    language: str
    outcome: CodeOutcome
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Whether the block ran and failed (what the filtered version leaves out)."""
        return self.outcome in CODE_FAILURES


class Example(msgspec.Struct, frozen=True, omit_defaults=True):
    """An instruction example; after the follow-up stage also a whole conversation.

    ``instruction``/``input``/``output`` are the first exchange, which the early stages
    rewrite. ``messages`` is empty until follow-ups are added and then holds the whole
    conversation, first exchange included; :meth:`conversation` gives the messages either way.
    ``annotation`` is set by the annotate step (None before it, or when its replies failed);
    ``code_check`` by the code_check step (None before it; empty when there is no code).
    """

    id: str
    instruction: str
    provenance: Provenance
    input: str = ""
    output: str = ""
    messages: tuple[Message, ...] = ()
    scores: dict[str, float] = {}
    annotation: Annotation | None = None
    code_check: tuple[BlockCheck, ...] | None = None

    def first_user_message(self) -> str:
        """The user's first message: the instruction, then the input after a blank line."""
        if self.input:
            return f"{self.instruction}\n\n{self.input}"
        return self.instruction

    def conversation(self) -> tuple[Message, ...]:
        """The conversation as chat messages, built from the first exchange if needed."""
        if self.messages:
            return self.messages
        return (
            Message("user", self.first_user_message()),
            Message("assistant", self.output),
        )

    def with_step(self, step: Step) -> Example:
        """A copy of this record with one more step in its provenance."""
        provenance = msgspec.structs.replace(self.provenance, steps=(*self.provenance.steps, step))
        return msgspec.structs.replace(self, provenance=provenance)


class Rejection(msgspec.Struct, frozen=True, omit_defaults=True):
    """A candidate that did not become a record, kept with a reason code for the funnel.

    ``record`` is the rejected candidate when it could be parsed; ``raw`` holds model
    output that could not be parsed at all; ``source_id`` names the input it came from.
    """

    reason: str
    source_id: str | None = None
    detail: str = ""
    record: Example | None = None
    raw: str = ""


def record_id(*parts: object) -> str:
    """A stable 16-hex-digit id from the parts that identify a record's making.

    Callers pass what makes a record unique (e.g. run seed, stage, round, prompt index,
    position in the completion), so rerunning a stage reproduces the same ids.
    """
    key = "\x1f".join(str(part) for part in parts)
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def child_id(parent_id: str, stage: str, *parts: object) -> str:
    """The id of a record derived from ``parent_id`` by ``stage``."""
    return record_id(parent_id, stage, *parts)
