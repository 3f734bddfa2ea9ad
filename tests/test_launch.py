"""Executors: SLURM parameters and windows, the container command, local GPUs and re-attach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from laerebogen.config import load_config
from laerebogen.errors import LaerebogenError
from laerebogen.launch import (
    LocalLauncher,
    SlurmLauncher,
    Submission,
    Task,
    container_python,
    max_array_size,
    slurm_parameters,
    windows,
)
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


def test_task_commands_are_the_cli_an_array_task_runs() -> None:
    assert Task("/r", "grammar", 3, 1).command() == [
        "shard", "--run", "/r", "--stage", "grammar", "--index", "3", "--attempt", "1",
    ]  # fmt: skip
    assert Task("/r", "grammar", -1, 0).command() == ["merge", "--run", "/r", "--stage", "grammar"]
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
    cpu = slurm_parameters(config, config.slurm.cpu_job, "lb-grammar-merge")
    assert "gpus_per_node" not in cpu
    bare = slurm_parameters(load_config("tiny"), load_config("tiny").slurm.cpu_job, "x")
    assert not {"slurm_partition", "slurm_account", "slurm_qos"} & set(bare)


def test_slurm_launcher_runs_tasks_inside_the_configured_container(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    config = load_config("tiny", ["container.image='/images/lb.sif'"])
    launcher = SlurmLauncher(config, tmp_path)
    assert launcher.window == slurm_cluster.max_array_size
    executor = launcher._executor("grammar", merge=False)
    text = executor._executor._make_submission_file_text("x", "uid")  # type: ignore[attr-defined]
    assert "apptainer exec --nv --bind" in executor._executor._submitit_command_str  # type: ignore[attr-defined]
    assert "#SBATCH --job-name=lb-grammar\n" in text


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
