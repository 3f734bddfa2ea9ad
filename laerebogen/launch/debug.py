"""The debug executor: each task at once in the driver's process, one after another, so that
exceptions propagate to the driver (and to pdb) and one engine per model is kept across shards."""

from __future__ import annotations

from collections.abc import Sequence

from laerebogen.launch.task import JobState, Launcher, Runner, Submission, Task


class DebugLauncher(Launcher):
    """Runs each task at once in this process; an exception stops the driver with it."""

    name = "debug"
    synchronous = True

    def __init__(self, run: Runner) -> None:
        self.run = run

    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        submissions = []
        for task in tasks:
            self.run(task)
            submissions.append(task.submitted(f"debug-{task.index}", "", session))
        return submissions

    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        return {submission.job_id: JobState(False, "ran in process") for submission in submissions}

    def close(self) -> str:
        self.run.close()
        return "the debug executor stopped with the driver; nothing is left running"
