"""Executors: where shard and merge jobs run (``debug``, ``local``, ``slurm``).

Re-exports the names that SLURM tasks pickled before the move to subpackages
refer to (up to commit 4cdde72), so that a requeued or pending task of such a run still loads.
"""

from laerebogen.launch.slurm import CheckpointableTask
from laerebogen.launch.task import Task

__all__ = ["CheckpointableTask", "Task"]
