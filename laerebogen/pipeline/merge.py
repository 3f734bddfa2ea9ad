"""The merge job of a step: checks its shards, filters and deduplicates, plans the next step.

It runs once per step after every shard finished (a CPU job on SLURM, a subprocess locally):

1. every shard's manifest is verified, and every shard must have consumed exactly its inputs;
2. the heuristic and language filters reject what is not a usable Danish example (follow-ups:
   the language of the added turns; annotation changes no text and is not screened again), and
   each survivor gets its Danish confidence as a score;
3. ROUGE-L deduplication of instructions over the step's records and the accumulated pool of
   :func:`laerebogen.pipeline.plan.dedup_pool`, where an evolved record is never compared with its
   own ancestors (evolution's elimination judged those);
4. the kept records and the rejections (with reasons) are written as the merged set, after
   checking that records in = records kept + records rejected; a broken invariant stops the run;
5. the next step's input shards are planned (:func:`laerebogen.pipeline.plan.plan_next`).

Every part is resumable: a merged set is not merged again, and ``merge.json`` is written last.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence

import msgspec

from laerebogen.chunking import chunked
from laerebogen.config.schema import Config
from laerebogen.errors import InvariantError
from laerebogen.log import Log, stderr_line
from laerebogen.pipeline.plan import (
    JUDGING_STAGES,
    MergeResult,
    StepPlan,
    dedup_pool,
    merge_file,
    plan_next,
    read_merge,
    read_plan,
)
from laerebogen.records import LANGUAGE_SCORE, Example, Rejection
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config
from laerebogen.store.shards import INPUT_CHUNK_SIZE, load_manifest


def merge_step(store: RunStore, step: str, log: Log = stderr_line) -> MergeResult:
    """Merge ``step`` (once) and plan the step after it; returns what was done."""
    done = read_merge(store, step)
    if done is not None:
        return done
    start = time.monotonic()
    config = run_config(store)
    plan = read_plan(store, step)
    if plan is None:
        raise InvariantError(f"{store.root}: step {step!r} was never planned")
    records_in = sum(store.manifest(step, index).outputs for index in range(plan.shards))
    if store.merged_manifest(step) is None:
        write_merged(store, config, plan, log)
    merged = store.merged_manifest(step)
    assert merged is not None
    if merged.outputs + merged.rejected_total != records_in:
        raise InvariantError(
            f"{step}: {records_in} records in the shards, but the merged set holds "
            f"{merged.outputs} and rejected {merged.rejected_total}"
        )
    following = plan_next(store, config, plan)
    result = MergeResult(
        step=step,
        records_in=records_in,
        kept=merged.outputs,
        rejected=merged.rejected,
        next=following.step if following else None,
        seconds=round(time.monotonic() - start, 3),
    )
    store.write_state(merge_file(step), result)
    return result


def merge_summary(result: MergeResult) -> str:
    """One line of what a merge did."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in _top(result.rejected))
    following = f"; next: {result.next}" if result.next else "; next: export"
    return (
        f"{result.step}: merged {result.records_in} records, kept {result.kept}, rejected "
        f"{sum(result.rejected.values())}" + (f" ({reasons})" if reasons else "") + following
    )


def _top(counts: dict[str, int], limit: int = 4) -> list[tuple[str, int]]:
    return Counter(counts).most_common(limit)


def shard_records(store: RunStore, plan: StepPlan) -> list[Example]:
    """The records of every shard of a step, after checking each consumed all its inputs."""
    records: list[Example] = []
    for index in range(plan.shards):
        manifest = store.manifest(plan.step, index)
        given = load_manifest(store.input_paths(plan.step, index))
        expected = given.outputs if given else 0
        if manifest.inputs != expected:
            raise InvariantError(
                f"{plan.step} shard {index}: consumed {manifest.inputs} of its {expected} inputs"
            )
        before = len(records)
        records.extend(store.read_records(plan.step, index))
        if len(records) - before != manifest.outputs:
            raise InvariantError(
                f"{plan.step} shard {index}: {len(records) - before} records on disk, "
                f"{manifest.outputs} in its manifest"
            )
    return records


def write_merged(store: RunStore, config: Config, plan: StepPlan, log: Log) -> None:
    """Screen and deduplicate a step's records and write the merged set."""
    records = shard_records(store, plan)
    rejections: dict[int, Rejection] = {}
    seen: set[str] = set()
    for index, record in enumerate(records):
        if record.id in seen:
            rejections[index] = Rejection("duplicate_id", record.id, "an id seen earlier", record)
        seen.add(record.id)
    duplicates = set(rejections)  # their ids are consumed by the first record with the id
    if plan.stage not in JUDGING_STAGES:  # they change no text: screened before
        log(f"{plan.step}: screening {len(records)} records")
        records = screen(records, rejections, config, plan.stage)
    pool = dedup_pool(store, config, plan)
    if pool is not None:
        log(f"{plan.step}: deduplicating against {len(pool)} earlier records")
        deduplicate(records, rejections, pool, config.filters.rouge_threshold)
    with store.open_merged(plan.step) as writer:
        if writer.chunks:  # a merge killed while writing: it is deterministic, so redo it
            log(f"{plan.step}: discarding {writer.chunks} chunks of an unfinished merge")
            writer.discard()
        for chunk in chunked(range(len(records)), INPUT_CHUNK_SIZE):
            writer.write_chunk(
                [records[index] for index in chunk if index not in rejections],
                [rejections[index] for index in chunk if index in rejections],
                [records[index].id for index in chunk if index not in duplicates],
            )
        writer.finish()


def _followup_turns(record: Example) -> list[tuple[str, str]]:
    """The added turns of a conversation as (user message, answer) pairs; [] if none."""
    added = record.conversation()[2:]
    users = [message.content for message in added if message.role == "user"]
    answers = [message.content for message in added if message.role == "assistant"]
    return list(zip(users, answers, strict=False))


def screen(
    records: list[Example], rejections: dict[int, Rejection], config: Config, stage: str
) -> list[Example]:
    """Apply the filters to records not yet rejected; returns the records with their scores."""
    from laerebogen.filtering.screening import Screener

    screener = Screener(config.filters)
    candidates = [index for index in range(len(records)) if index not in rejections]
    if stage == "followups":
        turns = {index: _followup_turns(records[index]) for index in candidates}
        judged = [index for index in candidates if turns[index]]
        judgements = screener.language.judge_turns([turns[index] for index in judged], first=2)
        outcomes = {
            index: (None if j.danish else (j.reason, j.detail), j.confidence)
            for index, j in zip(judged, judgements, strict=True)
        }
    else:
        triples = [(r.instruction, r.input, r.output) for r in map(records.__getitem__, candidates)]
        outcomes = {
            index: (
                (s.rejection.reason, s.rejection.detail) if s.rejection else None,
                s.language_confidence,
            )
            for index, s in zip(candidates, screener.screen(triples), strict=True)
        }
    result = list(records)
    for index, (problem, confidence) in outcomes.items():
        record = records[index]
        if confidence is not None:
            scores = {**record.scores, LANGUAGE_SCORE: round(confidence, 4)}
            record = result[index] = msgspec.structs.replace(record, scores=scores)
        if problem is not None:
            rejections[index] = Rejection(problem[0], record.id, problem[1], record)
    return result


def ancestors(records: Sequence[Example], pool: Sequence[Example]) -> Iterator[tuple[int, int]]:
    """Pairs (pool index, record index) where the pool record is an ancestor of the record."""
    where = {record.id: index for index, record in enumerate(pool)}
    for index, record in enumerate(records):
        parent = record.provenance.parent_id
        while parent is not None and parent in where:
            yield where[parent], index
            parent = pool[where[parent]].provenance.parent_id


def deduplicate(
    records: list[Example],
    rejections: dict[int, Rejection],
    pool: Sequence[Example],
    threshold: float,
) -> None:
    """Reject records whose instruction is a near-duplicate of an earlier one or the pool's."""
    from laerebogen.filtering.dedup import rouge_l_dedup

    candidates = [index for index in range(len(records)) if index not in rejections]
    texts = [records[index].instruction for index in candidates]
    exempt = list(ancestors([records[index] for index in candidates], pool))
    kept = set(rouge_l_dedup(texts, threshold, (p.instruction for p in pool), exempt))
    detail = f"ROUGE-L of the instruction above {threshold} with an earlier record"
    for position, index in enumerate(candidates):
        if position not in kept:
            record = records[index]
            rejections[index] = Rejection("near_duplicate", record.id, detail, record)
