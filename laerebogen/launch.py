"""Executors: where shard and merge jobs run. The only module that uses submitit.

Three executors share one small interface, so the driver does not care where work runs:

* ``slurm``: SLURM array jobs through submitit, one array task per shard, windows of at most
  the cluster's ``MaxArraySize`` tasks; merge jobs are CPU jobs. With ``container.image`` set,
  tasks run in the Apptainer image through submitit's python command. Tasks are
  checkpointable: on preemption or the time limit (submitit's USR2) they are requeued and
  resume after their last committed chunk.
* ``local``: each job in a fresh ``laerebogen shard``/``merge`` subprocess (vLLM frees its
  memory when it exits), ``launch.local_parallelism`` at a time, GPUs assigned round-robin.
* ``debug``: in the driver's process, one job after another; exceptions propagate (no pdb),
  and one engine per model is kept across shards.

A job is *active* while it is queued or running; when it ended, the driver looks at the run
directory (a manifest, a merge result) to know whether it succeeded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

import msgspec

from laerebogen.config import Config, SlurmJob
from laerebogen.errors import LaerebogenError

if TYPE_CHECKING:
    from laerebogen.shard_runner import EngineCache

MERGE = -1  # the index of a step's merge job among its shards
STOP_SECONDS = 60.0  # how long an interrupted driver gives its local jobs to stop
# How long a job may be missing from squeue and sacct after submission (sacct lags).
SLURM_GRACE_SECONDS = 60
ACTIVE_SLURM_STATES = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
     "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "PREEMPTED"}
)  # fmt: skip


class Task(msgspec.Struct, frozen=True):
    """One job to run: shard ``index`` of ``step`` (or its merge, index ``MERGE``)."""

    run_dir: str
    step: str
    index: int
    attempt: int

    @property
    def label(self) -> str:
        """How reports name the job."""
        return f"{self.step} merge" if self.index == MERGE else f"{self.step} shard {self.index}"

    def command(self) -> list[str]:
        """The ``laerebogen`` command line that runs this job."""
        where = ["--run", self.run_dir, "--stage", self.step]
        if self.index == MERGE:
            return ["merge", *where]
        return ["shard", *where, "--index", str(self.index), "--attempt", str(self.attempt)]

    def run(self, engines: EngineCache | None = None) -> None:
        """Run the job in this process: what every executor ends up calling."""
        if self.index == MERGE:
            from laerebogen.merge import merge_step
            from laerebogen.store import RunStore

            merge_step(RunStore(self.run_dir), self.step)
        else:
            from laerebogen.shard_runner import run_shard

            run_dir = Path(self.run_dir)
            run_shard(run_dir, self.step, self.index, attempt=self.attempt, engines=engines)

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


class StepJobs(msgspec.Struct):
    """Every submission of a step's jobs, oldest first: what a driver re-attaches to."""

    submissions: list[Submission] = []


def jobs_file(step: str) -> str:
    """Where a step's submissions are recorded."""
    return f"{step}/jobs.json"


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

    def free_slots(self) -> int:
        """How many more tasks may be submitted now."""
        return sys.maxsize

    def close(self) -> str:
        """Release what the launcher holds (engines, process handles); says what became of
        the jobs still running (what an interrupted driver reports)."""
        return "jobs already submitted keep running and the rerun adopts them"


# ---------------------------------------------------------------- debug


class DebugLauncher(Launcher):
    """Runs each task at once in this process; an exception stops the driver with it."""

    name = "debug"
    synchronous = True

    def __init__(self) -> None:
        from laerebogen.shard_runner import EngineCache

        self.engines = EngineCache()

    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        submissions = []
        for task in tasks:
            task.run(self.engines)
            submissions.append(task.submitted(f"debug-{task.index}", "", session))
        return submissions

    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        return {submission.job_id: JobState(False, "ran in process") for submission in submissions}

    def close(self) -> str:
        self.engines.close()
        return "the debug executor stopped with the driver; nothing is left running"


# ---------------------------------------------------------------- local


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


class LocalLauncher(Launcher):
    """Each task in a fresh subprocess, at most ``parallelism`` at once."""

    name = "local"

    def __init__(self, config: Config, run_dir: Path) -> None:
        self.run_dir = run_dir
        gpus = visible_gpus()
        per_task = max(config.models.base.tensor_parallel_size, 1)
        groups = [gpus[start : start + per_task] for start in range(0, len(gpus), per_task)]
        self.gpu_groups = [group for group in groups if len(group) == per_task]
        slots = config.launch.local_parallelism
        self.slots = min(slots, len(self.gpu_groups)) if gpus else slots
        if gpus and not self.gpu_groups:
            raise LaerebogenError(
                f"{len(gpus)} GPUs visible, but a model needs {per_task} (tensor_parallel_size)"
            )
        self.running: dict[str, tuple[subprocess.Popen[bytes], list[str], IO[bytes]]] = {}
        self.exit_codes: dict[str, int] = {}
        self.labels: dict[str, str] = {}  # job id -> what the job runs, for reports

    def _free_gpus(self) -> list[str] | None:
        if not self.gpu_groups:
            return None
        busy = {gpu for _, group, _ in self.running.values() for gpu in group}
        free = [group for group in self.gpu_groups if not busy & set(group)]
        return free[0] if free else None

    def free_slots(self) -> int:
        self._reap()
        return max(0, self.slots - len(self.running))

    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        submissions = []
        for task in tasks:
            name = "merge" if task.index == MERGE else f"shard-{task.index:05d}"
            log = Path(task.run_dir) / "logs" / task.step / f"{name}.attempt-{task.attempt}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            gpus = self._free_gpus() if task.index != MERGE else None
            if gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            command = [sys.executable, "-m", "laerebogen", *task.command()]
            handle = open(log, "ab")  # noqa: SIM115 (closed when the process is reaped)
            # A process group per job: whatever the job leaves behind (vLLM's engine and worker
            # processes, if the job was SIGKILLed) can be found and ended with it.
            process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
            job_id = f"pid-{process.pid}"
            self.running[job_id] = (process, gpus or [], handle)
            self.labels[job_id] = task.label
            submissions.append(task.submitted(job_id, str(log), session))
        return submissions

    def _reap(self) -> None:
        """Collect ended children and their exit codes."""
        for job_id, (process, _, handle) in list(self.running.items()):
            code = process.poll()
            if code is not None:
                _end_group(process.pid, signal.SIGKILL)  # orphans of a job that was killed
                handle.close()
                del self.running[job_id]
                self.exit_codes[job_id] = code

    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        self._reap()
        states = {}
        for submission in submissions:
            job_id = submission.job_id
            if job_id in self.running:
                states[job_id] = JobState(True, "running")
            elif job_id in self.exit_codes:
                states[job_id] = JobState(False, f"exit code {self.exit_codes[job_id]}")
            else:  # submitted by an earlier driver: alive if its pid still runs that task
                pid = int(job_id.removeprefix("pid-")) if job_id.startswith("pid-") else -1
                words = self._task_words(submission)
                alive = pid > 0 and _process_runs(pid, words)
                states[job_id] = JobState(alive, "running" if alive else "ended")
        return states

    def _task_words(self, submission: Submission) -> list[str]:
        """Words of the command line of a submission's job (steps run one after another)."""
        if submission.index == MERGE:
            return ["merge", "--run", str(self.run_dir)]
        return ["shard", "--run", str(self.run_dir), "--index", str(submission.index)]

    def close(self) -> str:
        """Stop the jobs still running (the driver was interrupted): each gets SIGTERM, which
        ends it like an exception would, keeping its committed chunks; what is left of a job
        after :data:`STOP_SECONDS` is killed."""
        stopped = [
            self.labels[job_id] for job_id, (p, _, _) in self.running.items() if p.poll() is None
        ]
        for process, _, _ in self.running.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process, _, handle in self.running.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _end_group(process.pid, signal.SIGKILL)
            handle.close()
        self.running.clear()
        if not stopped:
            return "no local job was running"
        return f"stopped {len(stopped)} local job(s): {', '.join(stopped)}"


# ---------------------------------------------------------------- slurm


class CheckpointableTask:
    """What a SLURM array task runs: the task, requeued with the same arguments on USR2.

    The shard resumes from its committed chunks, so the checkpoint needs no extra state.
    """

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self) -> None:
        self.task.run()

    def checkpoint(self) -> object:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(CheckpointableTask(self.task))


def max_array_size() -> int:
    """The cluster's ``MaxArraySize``: an array's task ids must stay below it."""
    try:
        output = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise LaerebogenError(f"cannot read the SLURM configuration (scontrol): {error}") from None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", output, re.MULTILINE)
    return int(match.group(1)) if match else 1001


def windows(tasks: Sequence[Task], size: int) -> list[Sequence[Task]]:
    """``tasks`` in arrays of at most ``size`` tasks, in order."""
    return [tasks[start : start + size] for start in range(0, len(tasks), max(size, 1))]


def container_python(config: Config, run_dir: Path) -> str | None:
    """submitit's python command inside the Apptainer image, or None without an image."""
    container = config.container
    if not container.image:
        return None
    binds = [str(run_dir.resolve())]
    binds += [str(config.model_path(role)) for role in ("base", "instruct")]  # type: ignore[arg-type]
    binds += list(container.binds)
    unique = ",".join(dict.fromkeys(binds))
    image = os.path.expandvars(container.image)
    return f"apptainer exec --nv --bind {shlex.quote(unique)} {shlex.quote(image)} python"


def slurm_parameters(config: Config, job: SlurmJob, name: str) -> dict[str, object]:
    """submitit AutoExecutor parameters of one kind of job."""
    slurm = config.slurm
    parameters: dict[str, object] = {
        "name": name,
        "timeout_min": job.time_minutes,
        "cpus_per_task": job.cpus,
        "mem_gb": job.mem_gb,
        "tasks_per_node": 1,
        "nodes": 1,
        "slurm_array_parallelism": slurm.array_parallelism,
    }
    if job.gpus:
        parameters["gpus_per_node"] = job.gpus
    optional = {
        "slurm_partition": slurm.partition,
        "slurm_account": slurm.account,
        "slurm_qos": slurm.qos,
    }
    parameters.update({key: value for key, value in optional.items() if value})
    if slurm.extra:
        parameters["slurm_additional_parameters"] = dict(slurm.extra)
    return parameters


class SlurmLauncher(Launcher):
    """SLURM array jobs through submitit; state from ``squeue``, then ``sacct``."""

    name = "slurm"

    def __init__(self, config: Config, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.python = container_python(config, run_dir)
        self.window = max_array_size()

    def _executor(self, step: str, merge: bool) -> object:
        import submitit

        folder = self.run_dir / "logs" / step
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_python=self.python)
        job = self.config.slurm.cpu_job if merge else self.config.slurm.gpu_job
        name = f"lb-{step}-merge" if merge else f"lb-{step}"
        executor.update_parameters(**slurm_parameters(self.config, job, name))
        return executor

    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        submissions = []
        for step in dict.fromkeys(task.step for task in tasks):
            for merge in (False, True):
                group = [t for t in tasks if t.step == step and (t.index == MERGE) == merge]
                if group:
                    submissions += self._submit_arrays(step, merge, group, session)
        return submissions

    def _submit_arrays(
        self, step: str, merge: bool, tasks: Sequence[Task], session: str
    ) -> list[Submission]:
        executor = self._executor(step, merge)
        submissions = []
        for window in windows(tasks, self.window):
            with executor.batch():  # type: ignore[attr-defined]
                jobs = [executor.submit(CheckpointableTask(task)) for task in window]  # type: ignore[attr-defined]
            submissions += [
                task.submitted(job.job_id, str(job.paths.stderr), session)
                for task, job in zip(window, jobs, strict=True)
            ]
        return submissions

    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        if not submissions:
            return {}
        queued = _squeue()
        missing = [s.job_id for s in submissions if s.job_id not in queued]
        accounted = _sacct(missing) if missing else {}
        states = {}
        now = time.time()
        for submission in submissions:
            job_id = submission.job_id
            if job_id in queued:
                states[job_id] = JobState(True, queued[job_id])
            elif job_id in accounted:
                state = accounted[job_id]
                states[job_id] = JobState(state.split()[0] in ACTIVE_SLURM_STATES, state)
            else:
                young = now - submission.submitted < SLURM_GRACE_SECONDS
                states[job_id] = JobState(young, "submitted" if young else "unknown to SLURM")
        return states


def _run_quietly(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=120
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _squeue() -> dict[str, str]:
    """This user's queued and running jobs, one line per array task: job id -> state."""
    output = _run_quietly(["squeue", "--me", "--array", "--noheader", "--format=%i|%T"])
    return dict(line.split("|", 1) for line in output.splitlines() if "|" in line)


def _sacct(job_ids: Sequence[str]) -> dict[str, str]:
    """Accounting states of ended jobs: job id -> state and exit code."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    output = _run_quietly(
        ["sacct", "--allocations", "--noheader", "--parsable2",
         "--format=JobID,State,ExitCode", f"--jobs={','.join(arrays)}"]
    )  # fmt: skip
    states = {}
    for line in output.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            states[parts[0]] = f"{parts[1]} exit {parts[2]}"
    return states


def make_launcher(name: str, config: Config, run_dir: Path) -> Launcher:
    """The executor ``name`` for a run."""
    if name == "debug":
        return DebugLauncher()
    if name == "local":
        return LocalLauncher(config, run_dir)
    if name == "slurm":
        return SlurmLauncher(config, run_dir)
    raise LaerebogenError(f"unknown executor {name!r}: choose slurm, local or debug")
