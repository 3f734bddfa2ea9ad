"""The dataset files of a finished run: complete and filtered, as JSONL and optionally Parquet.

Every line is one conversation, ``{"messages": [{"role": ..., "content": ...}, ...]}``, in the
run's order; with metadata it also carries the record's id, origin, evolution generation and
operation, turns and scores (:func:`laerebogen.filtering.readability.conversation_scores` plus the
record's own, e.g. ``quality_good``). The *complete* version holds every final record; the
*filtered* one the conversations whose scores pass the thresholds of the config's ``[export]``
table, and is written next to it as ``<name>.filtered.jsonl``. ``parquet=True`` adds
``<name>.parquet`` and ``<name>.filtered.parquet`` with the same rows.

Every file, in the run directory or at an ``out`` elsewhere, is replaced atomically by the
store's writers (a failed export leaves the previous files as they were). Export is
deterministic: the same run gives the same bytes (JSON by msgspec, scores rounded, Parquet
without timestamps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from laerebogen.config.schema import Config
from laerebogen.errors import InvariantError, LaerebogenError, StoreError
from laerebogen.filtering.readability import SCORES, conversation_scores
from laerebogen.pipeline.plan import chain, final_records, generation_step
from laerebogen.records import Example, Message
from laerebogen.store.atomic import atomic_lines, atomic_write
from laerebogen.store.run_dir import RunStore

DATASET_FILE = "dataset.jsonl"
JSONL_SUFFIX = ".jsonl"
FILTERED = ".filtered"
PARQUET_SUFFIX = ".parquet"
SCORE_DIGITS = 4  # scores are rounded: stable bytes, and no float noise in the files
PARQUET_ROW_GROUP = 10_000  # rows per Parquet row group (and per batch held in memory)
PARQUET_COMPRESSION = "zstd"

FILTER_REASONS: dict[str, str] = {
    "min_lix": (
        "LIX of the answers at least {value:g}: below 20 Danish text reads like a children's "
        "book; in generated answers it means fragments, one-word replies or bare lists"
    ),
    "max_lix": (
        "LIX of the answers at most {value:g}: above the 55 of academic and legal Danish, "
        "generated text is run-on sentences without punctuation or word salad, not hard prose"
    ),
    "min_assistant_words": (
        "at least {value:g} words of answers in the conversation: under about two sentences "
        "(30 words) an answer teaches little, and the LIX of so few words is noise"
    ),
    "min_danish_confidence": (
        "Danish confidence at least {value:g}: at 0.5 Danish is more likely than the 7 other "
        "languages together; the merge keeps 0.25 (twice the uniform 1/8) so as not to lose "
        "short Danish texts, the filtered version drops the Norwegian-, Swedish- or "
        "English-leaning ones"
    ),
}
"""Why each threshold of :class:`laerebogen.config.schema.Export` is set as it is, for the dataset
card; ``{value}`` is the run's threshold (the reasons argue for the defaults)."""


def filter_reasons(filters: Mapping[str, float]) -> dict[str, str]:
    """The card's sentence for each of ``filters`` with the thresholds filled in."""
    return {name: FILTER_REASONS[name].format(value=value) for name, value in filters.items()}


# Scores that are counts; every other score is a float.
INT_SCORES = frozenset({"user_words", "assistant_words", "turns"})


class Conversation(msgspec.Struct, frozen=True):
    """One line of the dataset."""

    messages: tuple[Message, ...]


class AnnotatedConversation(msgspec.Struct, frozen=True):
    """One line of the dataset with its metadata; a score the record lacks is null."""

    id: str
    messages: tuple[Message, ...]
    origin: str
    generation: int
    operation: str | None
    turns: int
    scores: dict[str, float | None]


class ExportResult(NamedTuple):
    """The files an export wrote and how many conversations each holds."""

    complete: Path
    filtered: Path
    count: int
    filtered_count: int
    parquet: tuple[Path, Path] | None = None


# ---------------------------------------------------------------- scores and filters


def export_scores(record: Example) -> dict[str, float]:
    """The record's own scores and its conversation scores (which win), sorted and rounded.

    Raises :class:`InvariantError` on NaN or infinity: a dataset file never holds them.
    """
    merged = {**record.scores, **conversation_scores(record)}
    scores: dict[str, float] = {}
    for name in sorted(merged):
        value = merged[name]
        if not math.isfinite(value):
            raise InvariantError(f"record {record.id}: score {name} is {value}")
        scores[name] = value if name in INT_SCORES else round(float(value), SCORE_DIGITS)
    return scores


def failed_filters(scores: Mapping[str, float], filters: Mapping[str, float]) -> list[str]:
    """The names of the filters that ``scores`` fail; empty when the conversation passes."""
    failed = []
    for name, threshold in filters.items():
        bound, _, score = name.partition("_")
        if bound not in ("min", "max") or not score:
            raise ValueError(f"filter {name!r}: expected min_<score> or max_<score>")
        value = scores.get(score)
        if value is None or (value < threshold if bound == "min" else value > threshold):
            failed.append(name)
    return failed


def passes(scores: Mapping[str, float], filters: Mapping[str, float]) -> bool:
    """Whether a conversation with ``scores`` belongs in the filtered version."""
    return not failed_filters(scores, filters)


# ---------------------------------------------------------------- rows


def _row(record: Example, scores: dict[str, float], keys: Iterable[str] | None) -> msgspec.Struct:
    """The line of ``record``: only its messages, or with metadata and the scores ``keys``."""
    if keys is None:
        return Conversation(record.conversation())
    provenance = record.provenance
    return AnnotatedConversation(
        id=record.id,
        messages=record.conversation(),
        origin=provenance.origin,
        generation=provenance.generation,
        operation=provenance.operation,
        turns=int(scores["turns"]),
        scores={key: scores.get(key) for key in keys},
    )


def _rows(
    store: RunStore,
    config: Config,
    scored: list[tuple[str, dict[str, float], bool]],
    keys: list[str] | None,
    *,
    filtered: bool,
) -> Iterator[msgspec.Struct]:
    """The lines of the complete (or filtered) version, reading the final records again."""
    records = final_records(store, config)
    for record, (record_id, scores, passed) in zip(records, scored, strict=True):
        if record.id != record_id:
            raise InvariantError(f"the final records changed during the export ({record.id})")
        if passed or not filtered:
            yield _row(record, scores, keys)


def _parquet_schema(keys: list[str] | None) -> Any:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    fields = [("messages", pa.list_(message))]
    if keys is not None:
        scores = [(key, pa.int64() if key in INT_SCORES else pa.float64()) for key in keys]
        fields = [
            ("id", pa.string()),
            *fields,
            ("origin", pa.string()),
            ("generation", pa.int64()),
            ("operation", pa.string()),
            ("turns", pa.int64()),
            ("scores", pa.struct(scores)),
        ]
    return pa.schema(fields)


def _parquet_bytes(rows: Iterable[msgspec.Struct], schema: Any) -> bytes:
    """A Parquet file of ``rows``, written in row groups of :data:`PARQUET_ROW_GROUP`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, compression=PARQUET_COMPRESSION) as writer:
        batch: list[Any] = []
        for row in rows:
            batch.append(msgspec.to_builtins(row))
            if len(batch) == PARQUET_ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return sink.getvalue().to_pybytes()


def output_paths(out: Path) -> tuple[Path, Path, Path, Path]:
    """The complete and filtered JSONL and Parquet files for ``out`` (a ``.jsonl`` path)."""
    if out.suffix != JSONL_SUFFIX:
        raise LaerebogenError(f"{out}: the export's file name must end in {JSONL_SUFFIX}")
    stem = out.with_suffix("")
    return (
        out,
        stem.with_name(f"{stem.name}{FILTERED}{JSONL_SUFFIX}"),
        stem.with_name(f"{stem.name}{PARQUET_SUFFIX}"),
        stem.with_name(f"{stem.name}{FILTERED}{PARQUET_SUFFIX}"),
    )


def check_finished(store: RunStore) -> None:
    """Raise :class:`StoreError` unless every step of the run is merged, the last with no next."""
    steps = list(chain(store))
    plan, merged = steps[-1] if steps else (None, None)
    if merged is None or merged.next is not None:
        step = merged.next if merged else plan.step if plan else generation_step(1)
        raise StoreError(
            f"{store.root}: the run is not finished ({step} is not merged); "
            "run `laerebogen dataset` with this --run to finish it"
        )


# ---------------------------------------------------------------- the export


def export(
    store: RunStore,
    config: Config,
    out: Path | None = None,
    *,
    with_metadata: bool = False,
    parquet: bool = False,
    filters: Mapping[str, float] | None = None,
) -> ExportResult:
    """Write the complete and the filtered dataset of a finished run (see the module docstring).

    ``out`` defaults to ``<run>/dataset.jsonl``; the other files are named after it. The final
    records are read once to score them and once per file, so memory holds the scores only.
    """
    check_finished(store)
    filters = config.export.thresholds() if filters is None else filters
    complete, filtered, complete_parquet, filtered_parquet = output_paths(
        store.root / DATASET_FILE if out is None else Path(out)
    )
    scored: list[tuple[str, dict[str, float], bool]] = []
    keys = set(SCORES)  # every conversation score is a column, even of an empty export
    for record in final_records(store, config):
        scores = export_scores(record)
        keys.update(scores)
        scored.append((record.id, scores, passes(scores, filters)))
    columns = sorted(keys) if with_metadata else None

    encoder = msgspec.json.Encoder()
    for path, only_passing in ((complete, False), (filtered, True)):
        rows = _rows(store, config, scored, columns, filtered=only_passing)
        atomic_lines(path, map(encoder.encode, rows))
    parquet_paths = None
    if parquet:
        schema = _parquet_schema(columns)
        for path, only_passing in ((complete_parquet, False), (filtered_parquet, True)):
            rows = _rows(store, config, scored, columns, filtered=only_passing)
            atomic_write(path, _parquet_bytes(rows, schema))
        parquet_paths = (complete_parquet, filtered_parquet)
    kept = sum(passed for _, _, passed in scored)
    return ExportResult(complete, filtered, len(scored), kept, parquet_paths)


def export_summary(result: ExportResult) -> str:
    """What an export wrote, one line per file."""
    lines = [
        f"complete: {result.count} conversations -> {result.complete}",
        f"filtered: {result.filtered_count} conversations -> {result.filtered}",
    ]
    if result.parquet is not None:
        lines.append(f"parquet: {result.parquet[0]}, {result.parquet[1]}")
    return "\n".join(lines)
