"""A run directory's configuration: saved by the first driver, read by every job of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from laerebogen.config.loading import dump_config, parse_config
from laerebogen.config.schema import Config, Container, Launch, Slurm
from laerebogen.errors import StoreError
from laerebogen.store.run_dir import RunStore

CONFIG_FILE = "config.toml"


# A refused rerun names at most this many of the keys that differ.
SHOWN_DIFFERENCES = 5


def _recipe(config: Config) -> dict[str, Any]:
    """The configuration without where it runs, as ``{"dotted.key": value}``: launch, SLURM
    and container settings may change between reruns (another partition, longer time
    limit), the recipe may not."""
    where = msgspec.structs.replace(config, launch=Launch(), slurm=Slurm(), container=Container())
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            flat[prefix] = value

    walk("", msgspec.to_builtins(where))
    return flat


def recipe_differences(saved: Config, config: Config) -> list[str]:
    """``key: saved -> new`` for every recipe setting that differs."""
    old, new = _recipe(saved), _recipe(config)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def start_run(config: Config, run_dir: Path) -> RunStore:
    """Open the run directory and save the configuration, refusing a different recipe."""
    store = RunStore(run_dir)
    saved = refuse_another_recipe(store, config)
    if saved != dump_config(config):
        store.write_text(CONFIG_FILE, dump_config(config))
    return store


def refuse_another_recipe(store: RunStore, config: Config) -> str | None:
    """Raise if the run was started with another recipe, naming the keys that differ;
    returns the saved configuration's text (None for a new run)."""
    run_dir = store.root
    saved = store.read_text(CONFIG_FILE)
    if saved is not None:
        differences = recipe_differences(parse_config(saved, str(run_dir / CONFIG_FILE)), config)
        if differences:
            shown = "; ".join(differences[:SHOWN_DIFFERENCES])
            more = len(differences) - SHOWN_DIFFERENCES
            raise StoreError(
                f"{run_dir}: this run was started with another configuration ({shown}"
                + (f"; and {more} more" if more > 0 else "")
                + f"); continue it with --config {run_dir / CONFIG_FILE}, or start a new --run"
            )
    return saved


def run_config(store: RunStore) -> Config:
    """The configuration a run was started with."""
    text = store.read_text(CONFIG_FILE)
    if text is None:
        raise StoreError(f"{store.root}: not a run directory (no {CONFIG_FILE})")
    return parse_config(text, str(store.root / CONFIG_FILE))
