"""``laerebogen decontaminate``: check a finished run against evaluation sets, and publish it
without the conversations that overlap them.

The benchmarks named with ``--against`` join the run's own (its config's ``[decontamination]
files`` and those added before), so every later export leaves the same conversations out;
``--report-only`` checks and writes ``decontamination.json`` without changing the dataset or
adding the benchmarks to the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from laerebogen.config.schema import BenchmarkFile
from laerebogen.errors import InvariantError, UsageError
from laerebogen.outputs.decontaminate import (
    add_benchmarks,
    decontaminate,
    decontamination_summary,
    run_benchmarks,
    write_decontamination_report,
)
from laerebogen.outputs.export import check_finished
from laerebogen.outputs.publish import publish, publish_summary
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config


def decontaminate_run(
    run: Path,
    against: Sequence[str],
    fields: Sequence[str] = (),
    *,
    report_only: bool = False,
    out: Path | None = None,
    with_metadata: bool = False,
    parquet: bool = False,
) -> str:
    """Decontaminate the run in ``run`` against its benchmarks and ``against`` (each read with
    ``fields``, empty: every string field); what was found and written."""
    if not against:
        raise UsageError("--against needs at least one benchmark file: --against FILE...")
    store = RunStore(run)
    config = run_config(store)
    check_finished(store)
    added = [BenchmarkFile(path=str(Path(p).resolve()), fields=list(fields)) for p in against]
    benchmarks = [*run_benchmarks(store, config), *added]
    if report_only:
        stats = decontaminate(store, config, benchmarks, remove=False).stats
        if stats is None:
            raise InvariantError("a decontamination against benchmarks has no statistics")
        report = write_decontamination_report(store, stats)
        return f"{decontamination_summary(stats)}\nreport: {report} (nothing removed)"
    published = publish(
        store, config, out, with_metadata=with_metadata, parquet=parquet, benchmarks=benchmarks
    )
    add_benchmarks(store, config, added)  # only once they have been read and applied
    return publish_summary(published)
