"""A run directory's configuration: saved by the first driver, read by every job of the run."""

from __future__ import annotations

from pathlib import Path

import msgspec

from laerebogen.config import Config, Container, Launch, Slurm, dump_config, parse_config
from laerebogen.errors import StoreError
from laerebogen.store import RunStore

CONFIG_FILE = "config.toml"


def _recipe(config: Config) -> str:
    """The configuration without where it runs: launch, SLURM and container settings may
    change between reruns (another partition, longer time limit), the recipe may not."""
    where = msgspec.structs.replace(config, launch=Launch(), slurm=Slurm(), container=Container())
    return dump_config(where)


def start_run(config: Config, run_dir: Path) -> RunStore:
    """Open the run directory and save the configuration, refusing a different recipe."""
    store = RunStore(run_dir)
    saved = store.read_text(CONFIG_FILE)
    if saved is not None:
        previous = parse_config(saved, str(run_dir / CONFIG_FILE))
        if _recipe(previous) != _recipe(config):
            raise StoreError(
                f"{run_dir}: this run was started with another configuration "
                f"(see {run_dir / CONFIG_FILE}); rerun with the same config or use a new --run"
            )
    if saved != dump_config(config):
        store.write_text(CONFIG_FILE, dump_config(config))
    return store


def run_config(store: RunStore) -> Config:
    """The configuration a run was started with."""
    text = store.read_text(CONFIG_FILE)
    if text is None:
        raise StoreError(f"{store.root}: not a run directory (no {CONFIG_FILE})")
    return parse_config(text, str(store.root / CONFIG_FILE))
