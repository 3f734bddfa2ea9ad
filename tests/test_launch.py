"""Executors: SLURM parameters and windows, the container command, local GPUs and re-attach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from laerebogen.config.loading import load_config
from laerebogen.errors import LaerebogenError
from laerebogen.launch.local import LocalLauncher
from laerebogen.launch.slurm import (
    CheckpointableTask,
    SlurmLauncher,
    container_python,
    max_array_size,
    sbatch_options,
    slurm_parameters,
    windows,
)
from laerebogen.launch.task import Submission, Task
from laerebogen.pipeline.jobs import JobRunner
from laerebogen.pipeline.plan import plan_first
from laerebogen.store.saved_config import start_run
from tests.slurm_cluster import SlurmCluster


def tasks(count: int) -> list[Task]:
    return [Task("/runs/r", "grammar", index, 0) for index in range(count)]


def test_arrays_are_split_into_windows_no_larger_than_max_array_size() -> None:
    assert [len(window) for window in windows(tasks(10), 4)] == [4, 4, 2]
    assert [len(window) for window in windows(tasks(4), 4)] == [4]
    assert windows([], 4) == []
    flat = [task for window in windows(tasks(9), 2) for task in window]
    assert flat == tasks(9)


def test_max_array_size_is_read_from_the_cluster(slurm_cluster: SlurmCluster) -> None:
    assert max_array_size() == slurm_cluster.max_array_size


def test_a_task_is_labelled_by_its_step_and_shard_or_merge() -> None:
    assert Task("/r", "grammar", 3, 1).label == "grammar shard 3"
    assert Task("/r", "grammar", -1, 0).label == "grammar merge"


def test_container_python_binds_the_run_the_models_and_extra_directories(tmp_path: Path) -> None:
    config = load_config(
        "tiny",
        [
            "model_dir='/shared/models'",
            "container.image='/images/laerebogen 1.sif'",
            "container.binds=['/scratch', '/shared/models/tiny']",
        ],
    )
    command = container_python(config, tmp_path / "run")
    binds = f"{tmp_path / 'run'},/shared/models/tiny,/scratch"
    assert command == f"apptainer exec --nv --bind {binds} '/images/laerebogen 1.sif' python"
    assert container_python(load_config("tiny"), tmp_path) is None


def test_slurm_parameters_reach_the_sbatch_script(tmp_path: Path) -> None:
    import submitit

    config = load_config(
        "gemma-27b",
        [
            "slurm.partition='gpu'",
            "slurm.account='proj'",
            "slurm.qos='high'",
            "slurm.array_parallelism=7",
            "slurm.gpu_job={time_minutes=90, gpus=2, cpus=16, mem_gb=120}",
            "slurm.extra={constraint='a100', exclusive='user', requeue=true, nice=5}",
        ],
    )
    parameters = slurm_parameters(config, config.slurm.gpu_job, "lb-grammar")
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(**parameters)
    text = executor._executor._make_submission_file_text("python job", "uid")
    for line in (
        "--partition=gpu", "--account=proj", "--qos=high", "--gpus-per-node=2",
        "--cpus-per-task=16", "--mem=120GB", "--time=90", "--constraint=a100",
        "--exclusive=user", "--job-name=lb-grammar", "--signal=USR2@90", "--requeue", "--nice=5",
    ):  # fmt: skip
        assert f"#SBATCH {line}\n" in text, line
    # What `sbatch --test-only` is asked before the run is what the jobs will ask for.
    for option in sbatch_options(config, config.slurm.gpu_job):
        assert f"#SBATCH {option}\n" in text, option
    cpu = slurm_parameters(config, config.slurm.cpu_job, "lb-grammar-merge")
    assert "gpus_per_node" not in cpu
    bare = slurm_parameters(load_config("tiny"), load_config("tiny").slurm.cpu_job, "x")
    assert not {"slurm_partition", "slurm_account", "slurm_qos"} & set(bare)


def test_slurm_launcher_runs_tasks_inside_the_configured_container(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    config = load_config("tiny", ["container.image='/images/lb.sif'"])
    launcher = SlurmLauncher(config, tmp_path, JobRunner())
    assert launcher.window == slurm_cluster.max_array_size
    executor = launcher._executor("grammar", merge=False)
    text = executor._executor._make_submission_file_text("x", "uid")  # type: ignore[attr-defined]
    assert "apptainer exec --nv --bind" in executor._executor._submitit_command_str  # type: ignore[attr-defined]
    assert "#SBATCH --job-name=lb-grammar\n" in text


def test_a_job_request_the_cluster_refuses_stops_the_run_before_it_writes_anything(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The local cluster has no GPUs: asking for one is refused in one line naming the key."""
    SlurmLauncher(
        load_config("tiny"), tmp_path, JobRunner()
    ).check()  # what the cluster can run passes
    run = tmp_path / "run"
    refused = subprocess.run(
        [sys.executable, "-m", "laerebogen", "dataset", "--config", "tiny", "--run", str(run),
         "--executor", "slurm", "--set", "slurm.gpu_job.gpus=1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = [line for line in refused.stderr.splitlines() if "SLURM" in line]
    assert "would refuse the [slurm] gpu_job jobs (" in line and "--gpus-per-node=1" in line
    assert "Invalid generic resource (gres) specification" in line
    assert not run.exists()
    nowhere = load_config("tiny", ["slurm.partition='nowhere'"])
    refusal = r"gpu_job jobs \(.*--partition=nowhere\): .*[Ii]nvalid partition"
    with pytest.raises(LaerebogenError, match=refusal) as error:
        SlurmLauncher(nowhere, tmp_path, JobRunner()).check()
    assert "\n" not in str(error.value)


def test_a_submission_sbatch_refuses_is_one_line_naming_the_job_kind(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    launcher = SlurmLauncher(load_config("tiny", ["slurm.gpu_job.gpus=1"]), tmp_path, JobRunner())
    with pytest.raises(LaerebogenError) as error:
        launcher.submit([Task(str(tmp_path), "grammar", 0, 0)], "test")
    message = str(error.value)
    assert message.startswith("SLURM refused the grammar shard jobs ([slurm] gpu_job): ")
    assert "gres" in message and "\n" not in message


def test_an_interrupted_driver_names_the_slurm_jobs_it_leaves(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    config = load_config("tiny", ["slurm.extra={begin='now+600'}"])  # held: stays pending
    launcher = SlurmLauncher(config, tmp_path, JobRunner())
    assert launcher.close() == "no SLURM job of this driver is queued or running"
    (submission,) = launcher.submit([Task(str(tmp_path), "grammar", 0, 0)], "test")
    try:
        said = launcher.close()
    finally:
        subprocess.run(["scancel", submission.job_id.split("_")[0]], check=True)
    assert said.startswith("left 1 SLURM job(s) queued or running, which the rerun adopts")
    assert said.endswith(f": {submission.job_id}")


def test_local_launcher_gives_each_shard_its_own_gpus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4")
    overrides = ["launch.local_parallelism=8", "models.base.tensor_parallel_size=2"]
    launcher = LocalLauncher(load_config("tiny", overrides), tmp_path)
    assert launcher.gpu_groups == [["0", "1"], ["2", "3"]] and launcher.slots == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(LaerebogenError, match="1 GPUs visible, but a model needs 2"):
        LocalLauncher(load_config("tiny", overrides), tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert LocalLauncher(load_config("tiny", overrides), tmp_path).slots == 8


def test_local_launcher_reattaches_to_a_shard_process_of_an_earlier_driver(
    tmp_path: Path,
) -> None:
    """A pid counts as the shard's job only while it runs that shard's command line."""
    run = str(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "shard", "--run", run, "--index", "3"]
    )
    try:
        launcher = LocalLauncher(load_config("tiny"), tmp_path)
        mine = Submission(3, 0, f"pid-{process.pid}", "log", "earlier", 0.0)
        other_shard = Submission(4, 0, f"pid-{process.pid}", "log", "earlier", 0.0)
        states = launcher.states([mine])
        assert states[mine.job_id].active
        assert not launcher.states([other_shard])[other_shard.job_id].active
    finally:
        process.kill()
        process.wait()
    assert not launcher.states([mine])[mine.job_id].active


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_local_jobs_leave_no_engine_processes_behind(
    tmp_path: Path, recipe_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job killed outright has its orphans (vLLM's engine processes) ended when it is reaped;
    an interrupted driver stops its running jobs, which keep their committed chunks."""
    # On CPUs the engine runs inside the job; GPU jobs run vLLM's engine core in processes of
    # its own, and those are the orphans a killed job leaves.
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    overrides = [
        *recipe_overrides,
        "generation.first_round_prompts=40",
        "generation.prompts_per_shard=40",
        "engine.chunk_size=1",
    ]
    config = load_config("tiny", overrides)
    store = start_run(config, tmp_path / "run")
    step = plan_first(store, config).step
    journal = tmp_path / "run" / step / "shard-00000.journal"
    launcher = LocalLauncher(config, tmp_path / "run")

    def started(attempt: int, chunks: int) -> Submission:
        (submission,) = launcher.submit([Task(str(tmp_path / "run"), step, 0, attempt)], "test")
        wait_for(
            lambda: journal.exists() and journal.read_bytes().count(b"\n") >= chunks,
            f"{chunks} committed chunks",
        )
        return submission

    killed = started(0, 1)
    pid = int(killed.job_id.split("-")[1])  # pid-<worker pid>-<job>
    assert len(group_members(pid)) > 1  # the job and vLLM's engine processes
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not launcher.states([killed])[killed.job_id].active, "the job to end")
    wait_for(lambda: not group_members(pid), "its orphans to be ended", seconds=10)

    committed = journal.read_bytes().count(b"\n")
    interrupted = started(1, committed + 1)
    pid = int(interrupted.job_id.split("-")[1])
    launcher.close()  # what the driver does when Ctrl-C stops it
    wait_for(lambda: not group_members(pid), "its processes to be ended", seconds=10)
    assert launcher.exit_codes == {killed.job_id: -signal.SIGKILL}  # close() forgets the rest
    assert not store.is_done(step, 0)
    assert journal.read_bytes().count(b"\n") > committed  # the resumed job's chunks stay
    log = Path(interrupted.log).read_text()
    assert "resuming after" in log and "Traceback" not in log


def test_a_local_worker_keeps_its_engine_between_jobs_and_retires_after_a_failure(
    tmp_path: Path, recipe_overrides: list[str]
) -> None:
    """Jobs of one model share a worker and its engine, each with its own log and exit code;
    a job that fails ends its worker, so the next job starts in a fresh process."""
    overrides = [
        *recipe_overrides,
        "generation.first_round_prompts=2",
        "generation.prompts_per_shard=1",
    ]
    config = load_config("tiny", overrides)
    run = tmp_path / "run"
    store = start_run(config, run)
    step = plan_first(store, config).step
    launcher = LocalLauncher(config, run)

    def finish(index: int) -> Submission:
        (submission,) = launcher.submit([Task(str(run), step, index, 0)], "test")
        wait_for(lambda: not launcher.states([submission])[submission.job_id].active, "the job")
        return submission

    try:
        first, second, missing, after = finish(0), finish(1), finish(7), finish(1)
    finally:
        launcher.close()
    assert store.is_done(step, 0) and store.is_done(step, 1)
    worker = first.job_id.split("-")[1]
    assert second.job_id.split("-")[1] == missing.job_id.split("-")[1] == worker
    assert "Initializing a V1 LLM engine" in Path(first.log).read_text()
    assert "Initializing a V1 LLM engine" not in Path(second.log).read_text()
    assert launcher.exit_codes[first.job_id] == launcher.exit_codes[second.job_id] == 0
    assert launcher.exit_codes[missing.job_id] == 2
    assert "error: generation-01 has shards 0-1, not 7" in Path(missing.log).read_text()
    assert after.job_id.split("-")[1] != worker  # a fresh worker after the failure
    assert "done already" in Path(after.log).read_text()


def test_a_slurm_task_pickled_before_the_move_to_subpackages_loads_and_runs_the_job(
    tmp_path: Path,
) -> None:
    """The file is what submitit pickled for a merge task with laerebogen at 4cdde72 (flat
    modules): a task pending or requeued across the upgrade still runs the pipeline's job."""
    from submitit.helpers import DelayedSubmission

    old = DelayedSubmission.load(Path(__file__).parent / "data/slurm-task-before-subpackages.pkl")
    assert isinstance(old.function, CheckpointableTask)
    assert old.function.task == Task("/nonexistent/run", "grammar", -1, 2)
    assert isinstance(old.function.run, JobRunner) and old.function.run.engines is None
    with pytest.raises(LaerebogenError, match="/nonexistent/run"):
        old.function()  # the merge job of a run that is not there: the pipeline's own error
    requeued = old.function.checkpoint()
    assert requeued.function.run is old.function.run and requeued.function.task == old.function.task
