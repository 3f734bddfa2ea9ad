"""The driver: plans the recipe's stages over a run directory and continues where it stopped."""

from __future__ import annotations

from pathlib import Path

from laerebogen import __version__
from laerebogen.config import Config, dump_config
from laerebogen.errors import StoreError
from laerebogen.store import RunStore

PLANNED_STAGES = (
    "base generation",
    "grammar correction",
    "quality improvement",
    "evolution",
    "follow-ups",
    "export",
)


def start_run(config: Config, run_dir: Path) -> RunStore:
    """Open the run directory, saving the configuration or checking it against the saved one."""
    store = RunStore(run_dir)
    text = dump_config(config)
    saved = store.read_text("config.toml")
    if saved is not None and saved != text:
        raise StoreError(
            f"{run_dir}: this run was started with another configuration "
            f"(see {run_dir / 'config.toml'}); rerun with the same config or use a new --run"
        )
    if saved is None:
        store.write_text("config.toml", text)
    return store


def run_dataset(config: Config, run_dir: Path) -> None:
    """Run every stage that exists in this version and say plainly what does not yet."""
    start_run(config, run_dir)
    print(f"laerebogen {__version__}: run directory {run_dir} (config {config.name or 'custom'})")
    print("Not implemented yet in this version: " + ", ".join(PLANNED_STAGES) + ".")
    print("No dataset was produced.")
