"""A finished run made publishable: the dataset files, ``stats.json``, plots and the card.

What ``laerebogen export`` and the end of ``laerebogen dataset`` write, all in the directory of
the export (the run directory by default), so that directory is a dataset repository as the
Hugging Face Hub expects it: ``README.md`` (the card), the complete and filtered JSONL (and
Parquet), ``stats.json``, ``plots/`` (the map of the tasks among them) and ``browse/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import BenchmarkFile, Config
from laerebogen.errors import InvariantError
from laerebogen.outputs.browse import BrowseResult, browse_summary, write_browse
from laerebogen.outputs.card import card_path, render_card
from laerebogen.outputs.decontaminate import (
    decontaminate,
    decontamination_summary,
    run_benchmarks,
)
from laerebogen.outputs.export import (
    Conversation,
    ExportResult,
    check_finished,
    export,
    export_summary,
)
from laerebogen.outputs.report import PLOTS_DIR, Report, report_summary, write_report
from laerebogen.outputs.task_map import draw_map
from laerebogen.records import Message
from laerebogen.store.atomic import atomic_write
from laerebogen.store.run_dir import RunStore

# The card's picture of the map of the tasks, beside the report's plots.
MAP_PLOT = f"{PLOTS_DIR}/map.png"
MAP_TITLE = "The tasks of the dataset"


class Published(NamedTuple):
    """What :func:`publish` wrote."""

    export: ExportResult
    report: Report
    browse: BrowseResult
    card: Path


def first_conversation(*paths: Path) -> tuple[Message, ...]:
    """The first conversation of the first non-empty JSONL file of ``paths`` (the card's
    example); empty when every file is empty."""
    decoder = msgspec.json.Decoder(Conversation)
    for path in paths:
        with open(path, "rb") as handle:
            line = handle.readline()
        if line.strip():
            return decoder.decode(line).messages
    return ()


def publish(
    store: RunStore,
    config: Config,
    out: Path | None = None,
    *,
    with_metadata: bool = False,
    parquet: bool = False,
    benchmarks: Sequence[BenchmarkFile] | None = None,
) -> Published:
    """Decontaminate and export a finished run (``out`` as in
    :func:`laerebogen.outputs.export.export`), then write its report, browse page, map and card
    beside the export. ``benchmarks`` are the evaluation sets to decontaminate against
    (default: the run's)."""
    check_finished(store)
    if benchmarks is None:
        benchmarks = run_benchmarks(store, config)
    outcome = decontaminate(store, config, benchmarks)
    result = export(
        store, config, out, with_metadata=with_metadata, parquet=parquet, removed=outcome.removed
    )
    report = write_report(store, config, result.complete.parent, outcome)
    if (report.stats.conversations, report.stats.filtered) != (
        result.count,
        result.filtered_count,
    ):
        raise InvariantError("the report and the export count different conversations")
    directory = result.complete.parent
    browse = write_browse(
        store, config, directory, decontamination=outcome, verdicts=result.verdicts
    )
    task_map = None
    if browse.map is not None:
        picture = draw_map(browse.map.task_map, browse.map.labels, MAP_TITLE)
        atomic_write(directory / MAP_PLOT, picture)
        task_map = (MAP_PLOT, browse.map)
    else:  # no conversations: no map, and none of an earlier export
        (directory / MAP_PLOT).unlink(missing_ok=True)
    card = render_card(
        report.stats,
        config,
        complete=result.complete.name,
        filtered=result.filtered.name,
        # An annotated run's complete version may hold harmful conversations: never shown.
        example=first_conversation(
            *((result.filtered,) if config.annotate.enabled else (result.filtered, result.complete))
        ),
        task_map=task_map,
    )
    path = atomic_write(card_path(result.complete), card.encode("utf-8"))
    return Published(result, report, browse, path)


def publish_summary(published: Published) -> str:
    """What was written, one kind of file per line."""
    return "\n".join(
        [
            export_summary(published.export),
            report_summary(published.report),
            decontamination_summary(published.report.stats.decontamination),
            browse_summary(published.browse),
            f"card: {published.card}",
        ]
    )
