"""Each final conversation's chain through the run, for the browse page.

A record's provenance lists every step that made or changed it, its ancestors' included (an
evolved record starts with its parent's steps). :class:`Lineage` reads the merged sets of the
steps that write the first exchange (base generation, imports, grammar, quality, evolution)
once, keeping a record's text only where a step changed it, and turns a final record's steps
into events with the text each step left. What a step does not store, the stage's own pure
functions recompute from the run's seed: the seed tasks a generation prompt showed
(:meth:`GenerationStage.shots`) and the kind of each follow-up turn (:func:`choose_kind`).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Config
from laerebogen.pipeline.plan import chain, import_step
from laerebogen.records import IMPORT_PREFIX, Example, Provenance, Step
from laerebogen.seeds import SEED_STAGE
from laerebogen.sources.imports import IMPORT_STAGE
from laerebogen.stages.core import Context
from laerebogen.stages.followups import FollowupStage, choose_kind
from laerebogen.stages.generation import SLOT_NOTE, GenerationStage
from laerebogen.store.run_dir import RunStore

# The stages whose steps write the first exchange; later steps leave it as it is.
TEXT_STAGES = frozenset({"generation", "magpie", "grounded", "grammar", "quality", "evolution"})


class Text(msgspec.Struct, frozen=True):
    """A record's first exchange as a step left it."""

    instruction: str
    input: str
    output: str

    @classmethod
    def of(cls, record: Example) -> Text:
        return cls(record.instruction, record.input, record.output)


class Event(msgspec.Struct, frozen=True):
    """One step of a conversation's lineage: the provenance step, the run step it ran in,
    the record version it made, and its text where it changed the first exchange (else None).

    ``shots`` (base generation: the seed tasks its prompt showed) and ``kinds`` (follow-ups:
    the kind of each user turn added) are left out where they do not apply.
    """

    step: str
    stage: str
    round: int
    model: str
    seed: int | None
    shard: int | None
    attempt: int
    note: str
    record: str
    generation: int
    operation: str | None
    text: Text | None
    shots: tuple[Text, ...] | msgspec.UnsetType = msgspec.UNSET
    kinds: tuple[str, ...] | msgspec.UnsetType = msgspec.UNSET


class _Version(NamedTuple):
    """What a record id was at one run step: the text, when that step changed it."""

    step: str
    text: Text


class _Ancestor(NamedTuple):
    """A record of a conversation's evolution chain."""

    id: str
    parent_id: str | None
    generation: int
    operation: str | None

    @classmethod
    def of(cls, record: Example) -> _Ancestor:
        provenance = record.provenance
        return cls(record.id, provenance.parent_id, provenance.generation, provenance.operation)


class Lineage:
    """The lineage of the final records of one finished run (see the module docstring)."""

    def __init__(self, store: RunStore, config: Config) -> None:
        self.config = config
        self.step_names: dict[tuple[str, int], str] = {}
        self.versions: dict[str, list[_Version]] = {}
        self.evolved: dict[str, _Ancestor] = {}
        for plan, merged in chain(store):
            self.step_names[(plan.stage, plan.round)] = plan.step
            if merged is not None and plan.stage in TEXT_STAGES:
                self._read(store, plan.step, evolved=plan.stage == "evolution")
        for name in sorted(config.sources.imports):
            if store.merged_manifest(import_step(name)) is not None:
                self._read(store, import_step(name), evolved=False)
        seeds = list(store.read_records(SEED_STAGE, 0)) if store.is_done(SEED_STAGE, 0) else []
        enough = len(seeds) >= config.generation.seeds_per_prompt
        self.generation = GenerationStage(config.generation, seeds) if enough else None

    def _read(self, store: RunStore, step: str, *, evolved: bool) -> None:
        for record in store.read_merged(step):
            text = Text.of(record)
            history = self.versions.setdefault(record.id, [])
            if not history or history[-1].text != text:
                history.append(_Version(step, text))
            if evolved:
                self.evolved[record.id] = _Ancestor.of(record)

    def ancestry(self, record: Example) -> list[_Ancestor]:
        """The record and its ancestors, the oldest (the base record) first."""
        line = [_Ancestor.of(record)]
        while (parent := line[-1].parent_id) is not None:
            line.append(self.evolved.get(parent, _Ancestor(parent, None, 0, None)))
        return line[::-1]

    def events(self, record: Example) -> list[Event]:
        """The record's lineage, one event per provenance step, in run order."""
        ancestry = self.ancestry(record)
        position = 0  # the ancestor each step belongs to: an evolution step moves to the next
        events: list[Event] = []
        for step in record.provenance.steps:
            if step.stage == "evolution" and position + 1 < len(ancestry):
                position += 1
            ancestor = ancestry[position]
            name = self._step_name(step, record.provenance.source)
            events.append(
                Event(
                    step=name,
                    stage=step.stage,
                    round=step.round,
                    model=step.model,
                    seed=step.sampling_seed,
                    shard=step.shard,
                    attempt=step.attempt,
                    note=step.note,
                    record=ancestor.id,
                    generation=ancestor.generation,
                    operation=ancestor.operation,
                    text=self._text(ancestor.id, name),
                    shots=self._shots(step),
                    kinds=self._kinds(step, ancestor.id),
                )
            )
        return events

    def _step_name(self, step: Step, source: str) -> str:
        """The run step (folder) a provenance step ran in; an import's is named by source."""
        if step.stage == IMPORT_STAGE and source.startswith(IMPORT_PREFIX):
            return import_step(source.removeprefix(IMPORT_PREFIX))
        return self.step_names.get((step.stage, step.round), step.stage)

    def _text(self, record_id: str, step: str) -> Text | None:
        for version in self.versions.get(record_id, ()):
            if version.step == step:
                return version.text
        return None

    def _shots(self, step: Step) -> tuple[Text, ...] | msgspec.UnsetType:
        """The seed tasks of a base generation step's prompt, from its slot (in the note)."""
        slot = step.note.removeprefix(SLOT_NOTE)
        if step.stage != "generation" or slot == step.note or self.generation is None:
            return msgspec.UNSET
        context = Context(run_seed=self.config.seed, round=step.round)
        placeholder = Example(id=slot, instruction="", provenance=Provenance("seed"))
        return tuple(map(Text.of, self.generation.shots(placeholder, context)))

    def _kinds(self, step: Step, record_id: str) -> tuple[str, ...] | msgspec.UnsetType:
        """The kind of each user turn a follow-up step added (its note: ``turns=k/n``)."""
        added, _, _ = step.note.removeprefix("turns=").partition("/")
        if step.stage != FollowupStage.name or not added.isdigit():
            return msgspec.UNSET
        context = Context(run_seed=self.config.seed, round=step.round)
        return tuple(
            choose_kind(context.seed(FollowupStage.name, record_id, f"kind-{turn}"))[0]
            for turn in range(int(added))
        )
