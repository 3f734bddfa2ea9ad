"""Imported datasets in a run: read once, screened and deduplicated as a step's merge does,
and kept as the set ``import-<name>``; their records join the inputs of the step the config
names (:func:`laerebogen.pipeline.plan.imported`).

Deduplication is against the seeds and within the import: the base sources' records do not
exist yet when the run starts, and the entry step's own merge compares them with the rest
where that step deduplicates (grammar, quality and evolution do; follow-ups and the judging
steps do not). Multi-turn conversations may only enter at a judging step (code_check,
annotate): the steps before rewrite or extend the first exchange only.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from laerebogen.chunking import chunked
from laerebogen.config.schema import Config
from laerebogen.errors import ConfigError
from laerebogen.log import Log, stderr_line
from laerebogen.pipeline.merge import deduplicate, screen
from laerebogen.pipeline.plan import JUDGING_STAGES, import_step, later_steps
from laerebogen.records import Example, Rejection
from laerebogen.seeds import load_seeds, seed_examples
from laerebogen.sources.imports import check_import_name, read_import
from laerebogen.store.run_dir import RunStore
from laerebogen.store.shards import INPUT_CHUNK_SIZE


class ImportResult(msgspec.Struct, frozen=True):
    """What importing one dataset did: rows read, records kept, rejections by reason."""

    name: str
    path: str
    step: str
    rows: int
    kept: int
    rejected: dict[str, int]


def import_file(name: str) -> str:
    """Where the result of importing ``name`` lives in the run directory."""
    return f"{import_step(name)}/import.json"


def entry_stage(config: Config, name: str) -> str:
    """The stage of the step the import ``name`` enters at; a one-line error when the run
    has no such step."""
    step = config.sources.imports[name].step
    stages = {step_name: stage for step_name, stage, _ in later_steps(config)}
    if step not in stages:
        raise ConfigError(
            f"sources.imports.{name}.step: {step!r} is not a step of this run; choose one of "
            + ", ".join(stages)
        )
    return stages[step]


def check_imports(config: Config) -> None:
    """Fail with one line before a run writes anything when an import's name, step or file
    is wrong."""
    for name, source in config.sources.imports.items():
        check_import_name(name)
        entry_stage(config, name)
        if not source.file_path().is_file():
            raise ConfigError(f"sources.imports.{name}.path: no file {source.file_path()}")


def import_sources(store: RunStore, config: Config, log: Log = stderr_line) -> list[ImportResult]:
    """Import every dataset of ``[sources.imports]`` not imported yet; returns each result."""
    return [import_one(store, config, name, log) for name in sorted(config.sources.imports)]


def import_one(store: RunStore, config: Config, name: str, log: Log) -> ImportResult:
    """Import the dataset ``name`` of the config into the run (once)."""
    check_import_name(name)
    multi_turn = entry_stage(config, name) in JUDGING_STAGES
    done = store.read_state(import_file(name), ImportResult)
    if done is not None:
        return done
    source = config.sources.imports[name]
    path = source.file_path()
    if store.merged_manifest(import_step(name)) is None:
        write_import(store, config, name, multi_turn, log)
    manifest = store.merged_manifest(import_step(name))
    assert manifest is not None
    result = ImportResult(
        name=name,
        path=str(path),
        step=source.step,
        rows=manifest.outputs + manifest.rejected_total,
        kept=manifest.outputs,
        rejected=manifest.rejected,
    )
    store.write_state(import_file(name), result)
    return result


def write_import(store: RunStore, config: Config, name: str, multi_turn: bool, log: Log) -> None:
    """Read, screen and deduplicate the dataset ``name`` and write it as its merged set."""
    path = config.sources.imports[name].file_path()
    kept, rejected = screened_import(config, path, name, multi_turn, log)
    with store.open_merged(import_step(name)) as writer:
        writer.discard()  # an import killed while writing: reading it again is cheap
        for chunk in chunked(kept, INPUT_CHUNK_SIZE):
            writer.write_chunk(chunk, consumed=[record.id for record in chunk])
        for chunk in chunked(rejected, INPUT_CHUNK_SIZE):
            writer.write_chunk([], chunk)
        writer.finish()


def screened_import(
    config: Config, path: Path, name: str, multi_turn: bool, log: Log = stderr_line
) -> tuple[list[Example], list[Rejection]]:
    """The records of a dataset file that pass the merge's filters and deduplication against
    the seeds, and the rejections: the rows that could not be read first, in row order."""
    records: list[Example] = []
    rejected: list[Rejection] = []
    for item in read_import(path, name, multi_turn=multi_turn):
        (records if isinstance(item, Example) else rejected).append(item)
    log(f"{import_step(name)}: screening {len(records)} records of {path}")
    rejections: dict[int, Rejection] = {}
    records = screen(records, rejections, config, "import")
    pool = list(seed_examples(load_seeds(config.seed_path())))
    deduplicate(records, rejections, pool, config.filters.rouge_threshold)
    kept = [record for index, record in enumerate(records) if index not in rejections]
    for index in sorted(rejections):  # named by their row, as the rows that were not read
        row = records[index].provenance.steps[0].note
        rejected.append(msgspec.structs.replace(rejections[index], source_id=row))
    return kept, rejected


def import_summary(result: ImportResult) -> str:
    """One line of what an import did."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in result.rejected.items())
    return (
        f"{import_step(result.name)}: {result.rows} rows of {result.path}, kept {result.kept}"
        + (f", rejected {sum(result.rejected.values())} ({reasons})" if reasons else "")
        + f"; they enter at {result.step}"
    )
