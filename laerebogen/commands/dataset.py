"""``laerebogen dataset``: check what could stop a run, prepare its models, drive its steps
and publish the dataset; with ``smoke``, a small run and the full run projected from it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from laerebogen import __version__
from laerebogen.commands.smoke import project, projection_summary, smoke_config, smoke_dir
from laerebogen.config.schema import Config
from laerebogen.launch.choose import make_launcher
from laerebogen.models.prepare import ensure_models
from laerebogen.outputs.decontaminate import check_benchmarks
from laerebogen.outputs.publish import publish, publish_summary
from laerebogen.pipeline.driver import drive, import_seeds
from laerebogen.pipeline.imports import check_imports, import_sources, import_summary
from laerebogen.pipeline.jobs import job_runner
from laerebogen.pipeline.plan import stages_to_run
from laerebogen.seeds import SEED_STAGE, load_seeds
from laerebogen.stages import build_stage
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import refuse_another_recipe, start_run


def run_dataset(
    config: Config,
    run_dir: Path,
    executor: str | None = None,
    out: TextIO = sys.stderr,
    smoke: int = 0,
) -> Path:
    """Run (or continue) the whole recipe in ``run_dir`` and publish it (the dataset, its
    card, stats and plots); returns the dataset's path. With ``smoke``, run it instead on a
    base set of that many records in ``<run_dir>.smoke`` and end with the measured steps and
    the full run projected from them (:mod:`laerebogen.commands.smoke`)."""
    started = time.monotonic()
    full = config
    if smoke:
        config, run_dir = smoke_config(config, smoke), smoke_dir(run_dir)
    name = executor or config.launch.executor
    out.write(
        f"laerebogen {__version__}: run directory {run_dir} (config {config.name or 'custom'}, "
        f"executor {name})\n"
    )
    # What can stop the run (another recipe in the directory, a bad seed file, a cluster that
    # refuses the jobs, a model that cannot be had) stops it before it writes anything, so
    # that running again with the config fixed is not refused as "another configuration".
    store = RunStore(run_dir)
    refuse_another_recipe(store, config)
    seeds = None if store.is_done(SEED_STAGE, 0) else load_seeds(config.seed_path())
    check_imports(config)
    check_benchmarks(config)
    stages = stages_to_run(store, config)
    for stage in stages:
        build_stage(stage, config, run_dir)  # a stage that cannot be built stops the run here
    models = sorted({model for stage in stages for model in config.stage_models(stage)})
    launcher = make_launcher(name, config, run_dir, job_runner(name))
    launcher.check()
    ensure_models(map(config.model_path, models), progress=lambda line: out.write(line + "\n"))
    with store.driver_lock() as locked:
        if not locked:
            out.write(f"{run_dir}: the file system has no locks: run one driver at a time\n")
        start_run(config, run_dir)
        out.write(import_seeds(store, config.seed_path(), seeds) + "\n")
        for result in import_sources(store, config, lambda line: out.write(line + "\n")):
            out.write(import_summary(result) + "\n")
        ran = drive(config, store, launcher, out)
        if not ran:
            out.write("every step was done already: the run is finished; writing its files again\n")
        published = publish(store, config)
    out.write(publish_summary(published) + "\n")
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    out.write(f"{run_dir}: {ran} steps run in {minutes} min {seconds} s\n")
    if smoke:
        out.write(projection_summary(project(store, config, full, name), full) + "\n")
    return published.export.complete
