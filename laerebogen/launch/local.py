"""The local executor: jobs in ``laerebogen worker`` subprocesses, ``launch.local_parallelism``
at a time, GPUs assigned round-robin; a worker keeps its model loaded between jobs, so the steps
of a run that use one model start vLLM once (:mod:`laerebogen.launch.local_worker`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from laerebogen.chunking import chunked
from laerebogen.config.schema import Config
from laerebogen.errors import LaerebogenError
from laerebogen.launch.task import MERGE, JobState, Launcher, Submission, Task

STOP_SECONDS = 60.0  # how long an interrupted driver gives its local jobs to stop


def visible_gpus() -> list[str]:
    """The GPUs this machine offers: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu for gpu in listed.split(",") if gpu.strip()]
    try:
        output = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(number) for number, line in enumerate(output.splitlines()) if line.strip()]


def _process_runs(pid: int, task_words: Sequence[str]) -> bool:
    """Whether ``pid`` is alive and runs the command with ``task_words`` (not a reused pid)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    words = raw.decode(errors="replace").split("\0")
    return all(word in words for word in task_words)


def _end_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to the process group ``pgid`` if any of it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class WorkOrder(msgspec.Struct, frozen=True):
    """One job for a local worker: what to run, where its output goes, the id to report."""

    task: Task
    log: str
    job_id: str


class _Worker:
    """A worker process of the local executor (:mod:`laerebogen.launch.local_worker`): it runs the
    jobs it is sent one after another and keeps its engine between them."""

    def __init__(self, run_dir: Path, gpus: list[str]) -> None:
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        read, write = os.pipe()
        command = [
            sys.executable, "-m", "laerebogen", "worker", "--run", str(run_dir),
            "--report-fd", str(write),
        ]  # fmt: skip
        # A process group per worker: whatever it leaves behind (vLLM's engine processes on
        # GPUs, if it was SIGKILLed) can be found and ended with it.
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            pass_fds=(write,),
            process_group=0,
        )
        os.close(write)
        os.set_blocking(read, False)
        self.reports = read
        self.pending = b""
        self.gpus = gpus
        self.job: str | None = None  # the job it runs now
        self.count = 0
        self.retiring = False  # a job failed: the worker exits instead of taking another

    def send(self, task: Task, log: Path) -> str:
        """Give the idle worker ``task``; returns the job's id."""
        self.count += 1
        self.job = f"pid-{self.process.pid}-{self.count}"
        assert self.process.stdin is not None
        self.process.stdin.write(msgspec.json.encode(WorkOrder(task, str(log), self.job)) + b"\n")
        self.process.stdin.flush()
        return self.job

    def reported(self) -> dict[str, int]:
        """Exit statuses of the jobs the worker has finished since the last look."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.reports, 65536):
                self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        statuses = {}
        for line in lines:
            job_id, status = line.decode().split()
            statuses[job_id] = int(status)
            self.retiring = self.retiring or status != "0"
            if job_id == self.job:
                self.job = None
        return statuses

    def end(self, signum: int | None = None) -> None:
        """Stop the worker (``signum``) or let it finish (stdin closed), then free its pipes."""
        if signum is not None and self.process.poll() is None:
            self.process.send_signal(signum)
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()

    def release(self) -> None:
        """After the worker exited: end what it left behind and close its report pipe."""
        _end_group(self.process.pid, signal.SIGKILL)
        os.close(self.reports)


class LocalLauncher(Launcher):
    """Jobs in worker subprocesses, at most ``launch.local_parallelism`` at once; a worker
    keeps its model loaded between jobs (:mod:`laerebogen.launch.local_worker`)."""

    name = "local"

    def __init__(self, config: Config, run_dir: Path) -> None:
        self.run_dir = run_dir
        gpus = visible_gpus()
        in_use = [config.models[model] for model in config.models_in_use()]
        per_task = max((model.tensor_parallel_size for model in in_use), default=1)
        groups = list(chunked(gpus, per_task))
        self.gpu_groups = [group for group in groups if len(group) == per_task]
        slots = config.launch.local_parallelism
        self.slots = min(slots, len(self.gpu_groups)) if gpus else slots
        if gpus and not self.gpu_groups:
            raise LaerebogenError(
                f"{len(gpus)} GPUs visible, but a model needs {per_task} (tensor_parallel_size)"
            )
        self.workers: list[_Worker] = []
        self.exit_codes: dict[str, int] = {}
        self.labels: dict[str, str] = {}  # job id -> what the job runs, for reports

    def _worker(self) -> _Worker:
        """An idle worker, started if none is idle (a free slot is assumed)."""
        for worker in self.workers:
            if worker.job is None and not worker.retiring and worker.process.poll() is None:
                return worker
        busy = {gpu for worker in self.workers if not worker.retiring for gpu in worker.gpus}
        free = [group for group in self.gpu_groups if not busy & set(group)]
        worker = _Worker(self.run_dir, free[0] if free else [])
        self.workers.append(worker)
        return worker

    def free_slots(self) -> int:
        self._reap()
        return max(0, self.slots - sum(worker.job is not None for worker in self.workers))

    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        submissions = []
        for task in tasks:
            name = "merge" if task.index == MERGE else f"shard-{task.index:05d}"
            log = Path(task.run_dir) / "logs" / task.step / f"{name}.attempt-{task.attempt}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            job_id = self._worker().send(task, log)
            self.labels[job_id] = task.label
            submissions.append(task.submitted(job_id, str(log), session))
        return submissions

    def _reap(self) -> None:
        """Collect finished jobs and ended workers with their exit codes."""
        for worker in list(self.workers):
            self.exit_codes.update(worker.reported())
            code = worker.process.poll()
            if code is None:
                continue
            self.exit_codes.update(worker.reported())
            if worker.job is not None:  # killed, or failed before it could report
                self.exit_codes[worker.job] = code
            worker.release()
            self.workers.remove(worker)

    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        self._reap()
        running = {worker.job for worker in self.workers}
        states = {}
        for submission in submissions:
            job_id = submission.job_id
            if job_id in running:
                states[job_id] = JobState(True, "running")
            elif job_id in self.exit_codes:
                states[job_id] = JobState(False, f"exit code {self.exit_codes[job_id]}")
            else:  # submitted by an earlier driver: alive if its pid still runs that job
                pid = re.match(r"pid-(\d+)", job_id)
                words = self._task_words(submission)
                alive = pid is not None and any(_process_runs(int(pid.group(1)), w) for w in words)
                states[job_id] = JobState(alive, "running" if alive else "ended")
        return states

    def _task_words(self, submission: Submission) -> list[list[str]]:
        """Words of the command lines that may run a submission's job: a worker of this run
        (it ends after its job once its driver is gone), or a job process of earlier
        versions (steps run one after another)."""
        run = ["--run", str(self.run_dir)]
        if submission.index == MERGE:
            return [["worker", *run], ["merge", *run]]
        return [["worker", *run], ["shard", *run, "--index", str(submission.index)]]

    def close(self) -> str:
        """Stop the jobs still running (the driver was interrupted): each worker gets SIGTERM,
        which ends its job like an exception would, keeping its committed chunks; what is
        left of a worker after :data:`STOP_SECONDS` is killed. Idle workers just exit."""
        self._reap()
        stopped = [self.labels[worker.job] for worker in self.workers if worker.job is not None]
        for worker in self.workers:
            worker.end(signal.SIGTERM if worker.job is not None else None)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.release()
        self.workers.clear()
        if not stopped:
            return "no local job was running"
        return f"stopped {len(stopped)} local job(s): {', '.join(stopped)}"
