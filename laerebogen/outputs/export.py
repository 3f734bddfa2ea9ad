"""The dataset files of a finished run: complete and filtered, as JSONL and optionally Parquet.

Every line is one conversation, ``{"messages": [{"role": ..., "content": ...}, ...]}``, in the
run's order; with metadata it also carries the record's id, origin, source, evolution
generation and operation, turns, its provenance steps (each with its model, sampling seed
and shard), scores (see
:func:`laerebogen.filtering.readability.conversation_scores`, plus the record's own, e.g.
``quality_good``), and the passage, the annotation and the code check in runs with the grounded
source and those steps. The *complete* version holds every final record; the *filtered* one the
conversations whose scores pass the thresholds of the config's ``[export]`` table and, when the
run annotated, that are judged harmless, of at least ``min_quality`` and within
``max_domain_share``, and, when the run checked code, that have no code block that failed; it
is written next to it as ``<name>.filtered.jsonl``. ``parquet=True`` adds ``<name>.parquet``
and ``<name>.filtered.parquet`` with the same rows. Conversations a decontamination found
contaminated (:mod:`laerebogen.outputs.decontaminate`) are in neither version.

Every file, in the run directory or at an ``out`` elsewhere, is replaced atomically by the
store's writers (a failed export leaves the previous files as they were). Export is
deterministic: the same run gives the same bytes (JSON by msgspec, scores rounded, Parquet
without timestamps).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from laerebogen.config.schema import Config
from laerebogen.errors import InvariantError, LaerebogenError, StoreError
from laerebogen.filtering.readability import SCORES, conversation_scores
from laerebogen.pipeline.plan import chain, final_records, first_step
from laerebogen.records import (
    CODE_FAILURES,
    Annotation,
    BlockCheck,
    Example,
    Message,
    Passage,
    Step,
)
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


# What the filtered version asks of a conversation's annotation, rule by rule, and why
# (``{value}``: the config's setting), in the order the card lists them.
ANNOTATION_REASONS: dict[str, str] = {
    "harmful": "not judged harmful: no hazard category of the taxonomy",
    "min_quality": (
        "quality of the answers judged at least {value:g} of 5: below 3 the annotation's own "
        "scale calls the answers partial, wrong or poor Danish"
    ),
    "unannotated": "annotated: without a usable judgement neither harm nor quality is known",
    "max_domain_share": (
        "at most {value:.0%} of the filtered version in one domain: a larger domain loses its "
        "lowest-quality conversations first"
    ),
}

# What the filtered version asks of a conversation's code, rule by rule (one per way a block
# fails), and why.
CODE_REASONS: dict[str, str] = {
    "code_syntax_error": "no code block that does not parse: code a reader cannot even run",
    "code_exception": "no code block that raises an exception when run as the answer shows it",
    "code_timeout": "no code block still running after the timeout: a hang or an endless loop",
    "code_resource_limit": "no code block stopped by the sandbox's CPU or memory limit",
}

# Scores that are counts; every other score is a float.
INT_SCORES = frozenset({"user_words", "assistant_words", "turns"})


class Conversation(msgspec.Struct, frozen=True):
    """One line of the dataset."""

    messages: tuple[Message, ...]


class StepRow(msgspec.Struct, frozen=True):
    """A provenance step as the dataset files show it: every field, so that each line has the
    same keys (a JSON file and its Parquet twin load as the same rows)."""

    stage: str
    round: int
    model: str
    sampling_seed: int | None
    shard: int | None
    attempt: int
    note: str

    @classmethod
    def of(cls, step: Step) -> StepRow:
        return cls(**msgspec.structs.asdict(step))


class AnnotatedConversation(msgspec.Struct, frozen=True):
    """One line of the dataset with its metadata; a score the record lacks is null."""

    id: str
    messages: tuple[Message, ...]
    origin: str
    source: str
    generation: int
    operation: str | None
    turns: int
    scores: dict[str, float | None]
    # Every step that made or changed the record, with its model, sampling seed and shard.
    steps: tuple[StepRow, ...]
    # Only in the files of a run with the grounded source: the passage a task rests on.
    passage: Passage | msgspec.UnsetType | None = msgspec.UNSET
    # Only in an annotated run's files: null where the annotation failed.
    annotation: Annotation | msgspec.UnsetType | None = msgspec.UNSET
    # Only in the files of a run that checked code: each block's outcome.
    code_check: tuple[BlockCheck, ...] | msgspec.UnsetType | None = msgspec.UNSET


class Verdict(NamedTuple):
    """A conversation of the export as the filtered version judged it: its scores and the
    rules and thresholds it fails (none: it is in the filtered version)."""

    id: str
    scores: dict[str, float]
    failed: list[str]


class ExportResult(NamedTuple):
    """The files an export wrote, how many conversations each holds, and the verdict on each
    conversation in the files' order."""

    complete: Path
    filtered: Path
    count: int
    filtered_count: int
    parquet: tuple[Path, Path] | None = None
    verdicts: tuple[Verdict, ...] = ()


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


def annotation_rules(config: Config) -> dict[str, float]:
    """The filtered version's rules on the annotation that apply to this run, with their
    settings: none without the annotate step, the domain cap only when set."""
    if not config.annotate.enabled:
        return {}
    rules = {"harmful": 1.0, "min_quality": float(config.export.min_quality), "unannotated": 1.0}
    if config.export.max_domain_share:
        rules["max_domain_share"] = config.export.max_domain_share
    return rules


def code_rules(config: Config) -> dict[str, float]:
    """The filtered version's rules on the checked code (none without the code_check step)."""
    if not config.code_check.enabled:
        return {}
    return dict.fromkeys(CODE_REASONS, 1.0)


def failed_outcomes(checks: Iterable[BlockCheck] | None) -> tuple[str, ...]:
    """The distinct ways a conversation's code blocks failed, in :data:`CODE_FAILURES` order."""
    failed = {check.outcome for check in checks or () if check.failed}
    return tuple(outcome for outcome in CODE_FAILURES if outcome in failed)


class Judged(NamedTuple):
    """What the filtered version looks at in a conversation."""

    scores: Mapping[str, float]
    annotation: Annotation | None
    failed_code: tuple[str, ...]  # :func:`failed_outcomes`

    @classmethod
    def of(cls, record: Example, scores: Mapping[str, float]) -> Judged:
        return cls(scores, record.annotation, failed_outcomes(record.code_check))


def failed_annotation(annotation: Annotation | None, rules: Mapping[str, float]) -> list[str]:
    """The rules of :func:`annotation_rules` that a conversation's annotation fails (the
    domain cap aside, which needs every conversation: :func:`over_domain_share`)."""
    if "unannotated" not in rules:
        return []
    if annotation is None:
        return ["unannotated"]
    failed = ["harmful"] if annotation.harmful else []
    if annotation.quality < rules["min_quality"]:
        failed.append("min_quality")
    return failed


def over_domain_share(candidates: Iterable[tuple[int, Annotation]], share: float) -> set[int]:
    """The positions to leave out so that no domain holds more than ``share`` of what is left.

    ``candidates`` are (position, annotation) of the conversations that pass every other rule.
    A domain over its share loses its lowest-quality conversations first (the later one of a
    tie); leaving some out shrinks the total, so the caps are computed again until they hold.
    """
    by_domain: dict[str, list[tuple[int, int]]] = {}
    for position, annotation in candidates:
        by_domain.setdefault(annotation.domain, []).append((annotation.quality, -position))
    for members in by_domain.values():
        members.sort(reverse=True)  # best first; within a quality, earlier first
    kept = {domain: len(members) for domain, members in by_domain.items()}
    while True:
        allowed = math.floor(share * sum(kept.values()) + 1e-9)
        over = {domain: allowed for domain, count in kept.items() if count > allowed}
        if not over:
            break
        kept.update(over)
    return {
        -negative
        for domain, members in by_domain.items()
        for _, negative in members[kept[domain] :]
    }


def judge_filtered(
    entries: Iterable[Judged], filters: Mapping[str, float], rules: Mapping[str, float]
) -> list[list[str]]:
    """For each conversation the thresholds (``filters``) and rules on annotation and code
    (``rules``) of the filtered version it fails; empty lists are the filtered version."""
    failures: list[list[str]] = []
    annotations: list[Annotation | None] = []
    for scores, annotation, failed_code in entries:
        code = [f"code_{outcome}" for outcome in failed_code if f"code_{outcome}" in rules]
        failures.append(
            failed_filters(scores, filters) + failed_annotation(annotation, rules) + code
        )
        annotations.append(annotation)
    if "max_domain_share" in rules:
        passing = (
            (position, annotation)
            for position, annotation in enumerate(annotations)
            if annotation is not None and not failures[position]
        )
        for position in over_domain_share(passing, rules["max_domain_share"]):
            failures[position].append("max_domain_share")
    return failures


def judge_run(
    store: RunStore,
    config: Config,
    removed: Collection[str] = frozenset(),
    filters: Mapping[str, float] | None = None,
) -> list[Verdict]:
    """The verdict on every conversation of the dataset (all final records but the
    ``removed``), in order; ``filters`` default to the config's thresholds. Memory holds the
    scores only."""
    filters = config.export.thresholds() if filters is None else filters
    ids: list[str] = []
    entries: list[Judged] = []
    for record in dataset_records(store, config, removed):
        ids.append(record.id)
        entries.append(Judged.of(record, export_scores(record)))
    failures = judge_filtered(entries, filters, annotation_rules(config) | code_rules(config))
    return [
        Verdict(record_id, dict(entry.scores), failed)
        for record_id, entry, failed in zip(ids, entries, failures, strict=True)
    ]


# ---------------------------------------------------------------- rows


def _row(
    record: Example, scores: dict[str, float], keys: Iterable[str] | None, config: Config
) -> msgspec.Struct:
    """The line of ``record``: only its messages, or with metadata, the scores ``keys`` and
    the annotation and code check when the run has those steps."""
    if keys is None:
        return Conversation(record.conversation())
    provenance = record.provenance
    return AnnotatedConversation(
        id=record.id,
        messages=record.conversation(),
        origin=provenance.origin,
        source=provenance.source,
        generation=provenance.generation,
        operation=provenance.operation,
        turns=int(scores["turns"]),
        scores={key: scores.get(key) for key in keys},
        steps=tuple(map(StepRow.of, provenance.steps)),
        passage=provenance.passage if _grounded(config) else msgspec.UNSET,
        annotation=record.annotation if config.annotate.enabled else msgspec.UNSET,
        code_check=record.code_check if config.code_check.enabled else msgspec.UNSET,
    )


def _grounded(config: Config) -> bool:
    """Whether the run has the grounded source (its files then have a ``passage`` column)."""
    return "grounded" in config.sources.active()


def dataset_records(
    store: RunStore, config: Config, removed: Collection[str] = frozenset()
) -> Iterator[Example]:
    """The final records that make the dataset: all but the ``removed`` ids (those a
    decontamination found contaminated)."""
    return (record for record in final_records(store, config) if record.id not in removed)


def _rows(
    store: RunStore,
    config: Config,
    verdicts: list[Verdict],
    keys: list[str] | None,
    *,
    filtered: bool,
    removed: Collection[str],
) -> Iterator[msgspec.Struct]:
    """The lines of the complete (or filtered) version, reading the final records again."""
    records = dataset_records(store, config, removed)
    for record, verdict in zip(records, verdicts, strict=True):
        if record.id != verdict.id:
            raise InvariantError(f"the final records changed during the export ({record.id})")
        if not (filtered and verdict.failed):
            yield _row(record, verdict.scores, keys, config)


def _parquet_schema(keys: list[str] | None, config: Config) -> Any:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    fields = [("messages", pa.list_(message))]
    if keys is not None:
        scores = [(key, pa.int64() if key in INT_SCORES else pa.float64()) for key in keys]
        fields = [
            ("id", pa.string()),
            *fields,
            ("origin", pa.string()),
            ("source", pa.string()),
            ("generation", pa.int64()),
            ("operation", pa.string()),
            ("turns", pa.int64()),
            ("scores", pa.struct(scores)),
            ("steps", pa.list_(_parquet_struct(StepRow))),
        ]
        if _grounded(config):
            fields.append(("passage", _parquet_struct(Passage)))
        if config.annotate.enabled:
            fields.append(("annotation", _parquet_struct(Annotation)))
        if config.code_check.enabled:
            fields.append(("code_check", pa.list_(_parquet_struct(BlockCheck))))
    return pa.schema(fields)


def _parquet_struct(kind: type[msgspec.Struct]) -> Any:
    """The Parquet type of a record struct of ints (or null) and strings, field by field."""
    import pyarrow as pa

    kinds = {int: pa.int64(), int | None: pa.int64(), str: pa.string()}
    return pa.struct(
        [(field.name, kinds.get(field.type, pa.string())) for field in msgspec.structs.fields(kind)]
    )


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
        step = merged.next if merged else plan.step if plan else first_step(store)
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
    removed: Collection[str] = frozenset(),
) -> ExportResult:
    """Write the complete and the filtered dataset of a finished run (see the module docstring),
    without the ``removed`` ids (contaminated conversations leave both versions).

    ``out`` defaults to ``<run>/dataset.jsonl``; the other files are named after it. The final
    records are read once to score them and once per file, so memory holds the scores only.
    """
    check_finished(store)
    complete, filtered, complete_parquet, filtered_parquet = output_paths(
        store.root / DATASET_FILE if out is None else Path(out)
    )
    verdicts = judge_run(store, config, removed, filters)
    keys = set(SCORES)  # every conversation score is a column, even of an empty export
    for verdict in verdicts:
        keys.update(verdict.scores)
    columns = sorted(keys) if with_metadata else None

    encoder = msgspec.json.Encoder()
    for path, only_passing in ((complete, False), (filtered, True)):
        rows = _rows(store, config, verdicts, columns, filtered=only_passing, removed=removed)
        atomic_lines(path, map(encoder.encode, rows))
    parquet_paths = None
    if parquet:
        schema = _parquet_schema(columns, config)
        for path, only_passing in ((complete_parquet, False), (filtered_parquet, True)):
            rows = _rows(store, config, verdicts, columns, filtered=only_passing, removed=removed)
            atomic_write(path, _parquet_bytes(rows, schema))
        parquet_paths = (complete_parquet, filtered_parquet)
    kept = sum(not verdict.failed for verdict in verdicts)
    return ExportResult(complete, filtered, len(verdicts), kept, parquet_paths, tuple(verdicts))


def export_summary(result: ExportResult) -> str:
    """What an export wrote, one line per file."""
    lines = [
        f"complete: {result.count} conversations -> {result.complete}",
        f"filtered: {result.filtered_count} conversations -> {result.filtered}",
    ]
    if result.parquet is not None:
        lines.append(f"parquet: {result.parquet[0]}, {result.parquet[1]}")
    return "\n".join(lines)
