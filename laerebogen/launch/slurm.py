"""The SLURM executor: array jobs through submitit, one array task per shard, windows of at
most the cluster's ``MaxArraySize`` tasks; merge jobs are CPU jobs. The only module that uses
submitit.

With ``container.image`` set, tasks run in the Apptainer image through submitit's python
command. Tasks are checkpointable: on preemption or the time limit (submitit's USR2) they are
requeued and resume after their last committed chunk.
"""

from __future__ import annotations

import os
import pkgutil
import re
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from laerebogen.chunking import chunked
from laerebogen.config.schema import PACKAGED, Config, SlurmJob
from laerebogen.errors import LaerebogenError
from laerebogen.launch.task import MERGE, JobState, Launcher, Runner, Submission, Task

# How long a job may be missing from squeue and sacct after submission (sacct lags).
SLURM_GRACE_SECONDS = 60
ACTIVE_SLURM_STATES = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
     "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "PREEMPTED"}
)  # fmt: skip


# What tasks pickled before the executors were handed their runner ran (see ``__setstate__``).
LEGACY_RUNNER = "laerebogen.pipeline.jobs:JobRunner"


class CheckpointableTask:
    """What a SLURM array task runs: ``run(task)``, requeued with the same arguments on USR2.

    The shard resumes from its committed chunks, so the checkpoint needs no extra state.
    """

    def __init__(self, run: Runner, task: Task) -> None:
        self.run = run
        self.task = task

    def __call__(self) -> None:
        try:
            self.run(self.task)
        finally:
            self.run.close()

    def checkpoint(self) -> object:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(CheckpointableTask(self.run, self.task))

    def __setstate__(self, state: dict[str, object]) -> None:
        """Load a task pickled before the move to subpackages (up to commit 4cdde72): it held only
        its task and ran the pipeline's job runner, named here by import path, not imported."""
        if "run" not in state:
            state = {**state, "run": pkgutil.resolve_name(LEGACY_RUNNER)()}
        self.__dict__.update(state)


def submitit_version() -> str:
    """The installed submitit's version (what ``laerebogen doctor`` shows)."""
    import submitit

    return submitit.__version__


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


def windows(tasks: Sequence[Task], size: int) -> list[list[Task]]:
    """``tasks`` in arrays of at most ``size`` tasks, in order."""
    return list(chunked(tasks, max(size, 1)))


def container_python(config: Config, run_dir: Path) -> str | None:
    """submitit's python command inside the Apptainer image, or None without an image; the
    run, the models and a grounded source's corpus are bound into it."""
    container = config.container
    if not container.image:
        return None
    binds = [str(run_dir.resolve())]
    binds += [str(config.model_path(name)) for name in config.models_in_use()]
    grounded = config.sources.grounded
    if "grounded" in config.sources.active() and not grounded.corpus.startswith(PACKAGED):
        binds.append(str(grounded.corpus_path()))  # the merge jobs cut it into passages
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


def model_job(config: Config, model: str) -> SlurmJob:
    """The resources of a shard of ``[models.<model>]``: ``gpu_job``'s, with as many GPUs as
    the model is split over (none on a cluster whose ``gpu_job`` asks for none); a task that
    names no model (made before mixtures) gets ``gpu_job`` as it is."""
    if not model:
        return config.slurm.gpu_job
    return msgspec.structs.replace(config.slurm.gpu_job, gpus=config.shard_gpus(model))


def check_model_gpus(config: Config) -> None:
    """One line when a model of the recipe needs more GPUs than ``gpu_job`` may have."""
    most = config.slurm.gpu_job.gpus
    for model in config.models_in_use():
        needed = config.models[model].tensor_parallel_size
        if most and needed > most:
            raise LaerebogenError(
                f"[models.{model}] tensor_parallel_size = {needed} needs {needed} GPUs per task, "
                f"but [slurm] gpu_job.gpus = {most}: raise gpu_job.gpus or lower the model's "
                "tensor_parallel_size"
            )


def check_slurm_accepts(config: Config) -> None:
    """Ask SLURM (``sbatch --test-only``) whether it would take each model's shards and a
    merge job as the config asks for them; one line naming the settings when it would not."""
    check_model_gpus(config)
    jobs = {("gpu_job", model_job(config, model)) for model in config.models_in_use()}
    for key, job in [*sorted(jobs, key=str), ("cpu_job", config.slurm.cpu_job)]:
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

    def __init__(self, config: Config, run_dir: Path, run: Runner) -> None:
        self.config = config
        self.run = run
        self.run_dir = run_dir
        self.python = container_python(config, run_dir)
        self.window = max_array_size()
        self.known: dict[str, Submission] = {}  # jobs this driver submitted or waited for

    def check(self) -> None:
        check_slurm_accepts(self.config)

    def _executor(self, step: str, kind: str, model: str) -> object:
        import submitit

        folder = self.run_dir / "logs" / step
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_python=self.python)
        job = self.config.slurm.cpu_job if kind != "shard" else model_job(self.config, model)
        name = f"lb-{step}" if kind != "merge" else f"lb-{step}-merge"
        executor.update_parameters(**slurm_parameters(self.config, job, name))
        return executor

    def submit(self, tasks: Sequence[Task], session: str) -> list[Submission]:
        submissions = []
        for step in dict.fromkeys(task.step for task in tasks):
            for kind in ("shard", "cpu shard", "merge"):
                group = [t for t in tasks if t.step == step and _kind(t) == kind]
                # Each model's shards are an array of their own: its resources are the model's.
                for model in dict.fromkeys(task.model for task in group):
                    same = [task for task in group if task.model == model]
                    submissions += self._submit_arrays(step, kind, model, same, session)
        self.known.update((submission.job_id, submission) for submission in submissions)
        return submissions

    def _submit_arrays(
        self, step: str, kind: str, model: str, tasks: Sequence[Task], session: str
    ) -> list[Submission]:
        from submitit.core.utils import FailedJobError

        executor = self._executor(step, kind, model)
        submissions = []
        for window in windows(tasks, self.window):
            try:
                with executor.batch():  # type: ignore[attr-defined]
                    jobs = [executor.submit(CheckpointableTask(self.run, task)) for task in window]  # type: ignore[attr-defined]
            except FailedJobError as error:  # sbatch refused: its message is what to fix
                resources = "gpu_job" if kind == "shard" else "cpu_job"
                raise LaerebogenError(
                    f"SLURM refused the {step} {kind} jobs ([slurm] {resources}): "
                    f"{slurm_errors(str(error))}"
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


def _kind(task: Task) -> str:
    """Which array a task goes in: model shards (``gpu_job``), CPU shards and merges
    (``cpu_job``; a merge's array has its own name)."""
    if task.index == MERGE:
        return "merge"
    return "cpu shard" if task.cpu else "shard"


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
