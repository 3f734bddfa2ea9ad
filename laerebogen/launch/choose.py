"""Choosing an executor by name."""

from __future__ import annotations

from pathlib import Path

from laerebogen.config.schema import Config
from laerebogen.errors import LaerebogenError
from laerebogen.launch.debug import DebugLauncher
from laerebogen.launch.local import LocalLauncher
from laerebogen.launch.slurm import SlurmLauncher
from laerebogen.launch.task import Launcher, Runner


def make_launcher(name: str, config: Config, run_dir: Path, run: Runner) -> Launcher:
    """The executor ``name`` for a run, running ``run`` (the local executor's workers run what
    ``laerebogen worker`` runs, in their own processes)."""
    if name == "debug":
        return DebugLauncher(run)
    if name == "local":
        return LocalLauncher(config, run_dir)
    if name == "slurm":
        return SlurmLauncher(config, run_dir, run)
    raise LaerebogenError(f"unknown executor {name!r}: choose slurm, local or debug")
