"""What the executors share: a task (one shard or merge job of a step), the record of its
submission, and the launcher interface. Launchers run what the driver hands them (a
:class:`Runner`) and know nothing of what a task does.

A job is *active* while it is queued or running; when it ended, the driver looks at the run
directory (a manifest, a merge result) to know whether it succeeded.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import msgspec

MERGE = -1  # the index of a step's merge job among its shards


class Task(msgspec.Struct, frozen=True):
    """One job to run: shard ``index`` of ``step`` (or its merge, index ``MERGE``); ``cpu``:
    it needs no GPU (a merge, a step without a model), so it gets the CPU job's resources;
    ``model``: the ``[models.NAME]`` a shard loads, whose size sets its GPUs."""

    run_dir: str
    step: str
    index: int
    attempt: int
    cpu: bool = False
    model: str = ""

    @property
    def label(self) -> str:
        """How reports name the job."""
        return f"{self.step} merge" if self.index == MERGE else f"{self.step} shard {self.index}"

    def submitted(self, job_id: str, log: str, session: str) -> Submission:
        """The record of this task's submission as job ``job_id``."""
        return Submission(self.index, self.attempt, job_id, log, session, time.time())


class Submission(msgspec.Struct, frozen=True):
    """One submitted job, as the driver records it in ``<step>/jobs.json``."""

    index: int
    attempt: int
    job_id: str
    log: str
    session: str
    submitted: float


class JobState(NamedTuple):
    """Whether a job is still queued or running, and what the executor says about it."""

    active: bool
    detail: str


class Launcher(ABC):
    """Runs tasks and reports their state; ``synchronous`` ones finish within ``submit``."""

    name: str
    synchronous = False

    @abstractmethod
    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        """Start (or queue) ``tasks``; one submission per task, in order."""

    @abstractmethod
    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        """The state of each submission, by job id."""

    def check(self) -> None:
        """Fail with one line when this executor cannot run the config's jobs; called before
        the run directory is written. Local and debug executors take any job."""
        return

    def free_slots(self) -> int:
        """How many more tasks may be submitted now."""
        return sys.maxsize

    def close(self) -> str:
        """Release what the launcher holds (engines, process handles); says what became of
        the jobs still running (what an interrupted driver reports)."""
        return "jobs already submitted keep running and the rerun adopts them"


class Runner(Protocol):
    """What a task runs, handed to the launcher by the driver (as a function is to submitit):
    picklable, because a SLURM task unpickles it in its own process."""

    def __call__(self, task: Task) -> None:
        """Run ``task`` in this process; an exception is the job's failure."""

    def close(self) -> None:
        """Release what runs kept between tasks (loaded models)."""
