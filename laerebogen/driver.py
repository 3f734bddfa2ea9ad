"""The driver: plans the recipe's stages over a run directory and continues where it stopped."""

from __future__ import annotations

from pathlib import Path

from laerebogen import __version__
from laerebogen.config import Config, dump_config
from laerebogen.errors import StoreError
from laerebogen.seeds import SEED_STAGE, load_seeds, seed_examples
from laerebogen.store import RunStore

NOT_YET_IMPLEMENTED = (
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


def import_seeds(store: RunStore, seed_file: Path) -> str:
    """Write the seed tasks as the run's first stage (once); returns what happened."""
    if store.is_done(SEED_STAGE, 0):
        return f"seeds: done already ({store.manifest(SEED_STAGE, 0).outputs} records)"
    tasks = load_seeds(seed_file)
    with store.open_shard(SEED_STAGE, 0) as writer:
        writer.write_chunk(list(seed_examples(tasks)), consumed=[task.id for task in tasks])
        manifest = writer.finish()
    return f"seeds: imported {manifest.outputs} records from {manifest.inputs} tasks ({seed_file})"


def run_dataset(config: Config, run_dir: Path) -> None:
    """Run every stage that exists in this version and say plainly what does not yet."""
    store = start_run(config, run_dir)
    print(f"laerebogen {__version__}: run directory {run_dir} (config {config.name or 'custom'})")
    print(import_seeds(store, config.seed_path()))
    print("Not implemented yet in this version: " + ", ".join(NOT_YET_IMPLEMENTED) + ".")
    print("No dataset was produced.")
