"""Executors: where shard and merge jobs run. The only module that uses submitit.

Three executors share one small interface, so the driver does not care where work runs:

* ``slurm``: SLURM array jobs through submitit, one array task per shard, windows of at most
  the cluster's ``MaxArraySize`` tasks; merge jobs are CPU jobs. With ``container.image`` set,
  tasks run in the Apptainer image through submitit's python command. Tasks are
  checkpointable: on preemption or the time limit (submitit's USR2) they are requeued and
  resume after their last committed chunk.
* ``local``: jobs in ``laerebogen worker`` subprocesses, ``launch.local_parallelism`` at a
  time, GPUs assigned round-robin; a worker keeps its model loaded between jobs, so the steps
  of a run that use one model start vLLM once.
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
from typing import TYPE_CHECKING, NamedTuple

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


class WorkOrder(msgspec.Struct, frozen=True):
    """One job for a local worker: what to run, where its output goes, the id to report."""

    task: Task
    log: str
    job_id: str


class _Worker:
    """A worker process of the local executor (:mod:`laerebogen.local_worker`): it runs the
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
    keeps its model loaded between jobs (:mod:`laerebogen.local_worker`)."""

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


def _slurm_command(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a SLURM client command; one line naming it when it cannot run at all."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise LaerebogenError(f"cannot run {command[0]} (is SLURM installed?): {error}") from None


def slurm_errors(stderr: str) -> str:
    """SLURM's error lines as one line, without their ``sbatch: error:`` prefixes."""
    lines = [re.sub(r"^\w+: error: ", "", line).strip() for line in stderr.splitlines()]
    return "; ".join(line for line in lines if line) or "no reason given"


def max_array_size() -> int:
    """The cluster's ``MaxArraySize``: an array's task ids must stay below it."""
    result = _slurm_command(["scontrol", "show", "config"])
    if result.returncode:
        reason = slurm_errors(result.stderr)
        raise LaerebogenError(f"SLURM does not answer (scontrol show config): {reason}")
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", result.stdout, re.MULTILINE)
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


def _placement(config: Config) -> dict[str, object]:
    """Where jobs go: partition, account, QOS (those set) and the ``extra`` sbatch options."""
    slurm = config.slurm
    chosen = {"partition": slurm.partition, "account": slurm.account, "qos": slurm.qos}
    return {key: value for key, value in chosen.items() if value} | dict(slurm.extra)


def slurm_parameters(config: Config, job: SlurmJob, name: str) -> dict[str, object]:
    """submitit AutoExecutor parameters of one kind of job."""
    parameters: dict[str, object] = {
        "name": name,
        "timeout_min": job.time_minutes,
        "cpus_per_task": job.cpus,
        "mem_gb": job.mem_gb,
        "tasks_per_node": 1,
        "nodes": 1,
        "slurm_array_parallelism": config.slurm.array_parallelism,
    }
    if job.gpus:
        parameters["gpus_per_node"] = job.gpus
    # submitit writes each additional parameter as `#SBATCH --key=value`, as sbatch_options do.
    if placement := _placement(config):
        parameters["slurm_additional_parameters"] = placement
    return parameters


def sbatch_options(config: Config, job: SlurmJob) -> list[str]:
    """The sbatch options submitit writes for a job of this kind (without name and array)."""
    options = {"time": job.time_minutes, "cpus-per-task": job.cpus, "mem": f"{job.mem_gb}GB"}
    options |= {"nodes": 1, "ntasks-per-node": 1}
    if job.gpus:
        options["gpus-per-node"] = job.gpus
    options |= {key.replace("_", "-"): value for key, value in _placement(config).items()}
    return [f"--{key}" if value is True else f"--{key}={value}" for key, value in options.items()]


def check_slurm_accepts(config: Config) -> None:
    """Ask SLURM (``sbatch --test-only``) whether it would take a shard and a merge job as
    the config asks for them; one line naming the settings when it would not."""
    for key, job in (("gpu_job", config.slurm.gpu_job), ("cpu_job", config.slurm.cpu_job)):
        options = sbatch_options(config, job)
        result = _slurm_command(["sbatch", "--test-only", "--job-name=laerebogen-check",
                                 *options, "--wrap=true"])  # fmt: skip
        if result.returncode:
            raise LaerebogenError(
                f"SLURM would refuse the [slurm] {key} jobs ({' '.join(options)}): "
                f"{slurm_errors(result.stderr)}; change [slurm] {key}, partition, account, qos "
                "or extra in the config"
            )


class SlurmLauncher(Launcher):
    """SLURM array jobs through submitit; state from ``squeue``, then ``sacct``."""

    name = "slurm"

    def __init__(self, config: Config, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.python = container_python(config, run_dir)
        self.window = max_array_size()
        self.known: dict[str, Submission] = {}  # jobs this driver submitted or waited for

    def check(self) -> None:
        check_slurm_accepts(self.config)

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
        self.known.update((submission.job_id, submission) for submission in submissions)
        return submissions

    def _submit_arrays(
        self, step: str, merge: bool, tasks: Sequence[Task], session: str
    ) -> list[Submission]:
        from submitit.core.utils import FailedJobError

        executor = self._executor(step, merge)
        submissions = []
        for window in windows(tasks, self.window):
            try:
                with executor.batch():  # type: ignore[attr-defined]
                    jobs = [executor.submit(CheckpointableTask(task)) for task in window]  # type: ignore[attr-defined]
            except FailedJobError as error:  # sbatch refused: its message is what to fix
                kind = "cpu_job" if merge else "gpu_job"
                raise LaerebogenError(
                    f"SLURM refused the {step} {'merge' if merge else 'shard'} jobs "
                    f"([slurm] {kind}): {slurm_errors(str(error))}"
                ) from None
            submissions += [
                task.submitted(job.job_id, str(job.paths.stderr), session)
                for task, job in zip(window, jobs, strict=True)
            ]
        return submissions

    def states(self, submissions: Sequence[Submission]) -> dict[str, JobState]:
        if not submissions:
            return {}
        self.known.update((submission.job_id, submission) for submission in submissions)
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

    def close(self) -> str:
        """Name the jobs of this driver that SLURM still holds: they go on without it."""
        states = self.states(list(self.known.values()))
        left = sorted(job_id for job_id, state in states.items() if state.active)
        if not left:
            return "no SLURM job of this driver is queued or running"
        return (
            f"left {len(left)} SLURM job(s) queued or running, which the rerun adopts "
            f"(scancel them to stop them): {', '.join(left)}"
        )


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
