"""The SLURM executor: parameters, array windows, the container command, refusals, old pickles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from laerebogen.config.loading import load_config
from laerebogen.errors import LaerebogenError
from laerebogen.launch.slurm import (
    CheckpointableTask,
    SlurmLauncher,
    check_model_gpus,
    container_python,
    max_array_size,
    model_job,
    sbatch_options,
    slurm_parameters,
    windows,
)
from laerebogen.launch.task import Task
from laerebogen.pipeline.jobs import JobRunner
from tests.support.paths import TEST_DATA
from tests.support.slurm_cluster import SlurmCluster


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
    # Every model a stage uses, by name.
    mixture = load_config("tiny", [*MIXTURE, "container.image='/i.sif'"])
    models = Path.home() / ".cache" / "laerebogen" / "models"
    assert f",{models / 'tiny'},{models / 'other-it'} " in str(
        container_python(mixture, tmp_path / "run")
    )
    # A grounded source's corpus too, unless it is the one inside the package.
    grounded = ["sources.shares={self_instruct = 0.5, grounded = 0.5}"]
    corpus = load_config("tiny", [*grounded, "sources.grounded.corpus='/data/tekster'",
                                  "container.image='/i.sif'"])  # fmt: skip
    assert ",/data/tekster " in str(container_python(corpus, tmp_path / "run"))
    packaged = load_config("tiny", [*grounded, "container.image='/i.sif'"])
    assert "corpus_da" not in str(container_python(packaged, tmp_path / "run"))
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
    executor = launcher._executor("grammar", "shard", "instruct")
    text = executor._executor._make_submission_file_text("x", "uid")  # type: ignore[attr-defined]
    assert "apptainer exec --nv --bind" in executor._executor._submitit_command_str  # type: ignore[attr-defined]
    assert "#SBATCH --job-name=lb-grammar\n" in text


MIXTURE = [
    "models.other={ path = 'other-it', tensor_parallel_size = 2 }",
    "followups.model={ instruct = 0.5, other = 0.5 }",
]


def test_each_models_shards_ask_for_its_own_gpus() -> None:
    config = load_config("gemma-27b", [*MIXTURE, "slurm.gpu_job.gpus=2"])
    assert model_job(config, "instruct").gpus == 1 and model_job(config, "other").gpus == 2
    assert "--gpus-per-node=2" in sbatch_options(config, model_job(config, "other"))
    assert model_job(config, "other").mem_gb == config.slurm.gpu_job.mem_gb
    check_model_gpus(config)
    # A CPU cluster (gpu_job.gpus = 0) asks for no GPU, whatever the model's size.
    cpu = load_config("tiny", MIXTURE)
    assert model_job(cpu, "other").gpus == 0
    check_model_gpus(cpu)


def test_a_model_larger_than_gpu_job_allows_is_one_line() -> None:
    config = load_config("gemma-27b", [*MIXTURE, "slurm.gpu_job.gpus=1"])
    with pytest.raises(LaerebogenError) as error:
        check_model_gpus(config)
    assert str(error.value) == (
        "[models.other] tensor_parallel_size = 2 needs 2 GPUs per task, but [slurm] "
        "gpu_job.gpus = 1: raise gpu_job.gpus or lower the model's tensor_parallel_size"
    )
    # A model no enabled stage uses is not checked.
    unused = load_config("gemma-27b", [MIXTURE[0], "slurm.gpu_job.gpus=1"])
    check_model_gpus(unused)


def test_each_models_shards_are_an_array_of_their_own(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    config = load_config("tiny", MIXTURE)
    launcher = SlurmLauncher(config, tmp_path, JobRunner())
    tasks = [
        Task(str(tmp_path), "followups", index, 0, model=model)
        for index, model in enumerate(["instruct", "other", "instruct"])
    ]
    submissions = launcher.submit(tasks, "test")
    try:
        arrays = [submission.job_id.split("_")[0] for submission in submissions]
        assert arrays[0] == arrays[1] != arrays[2]
        assert [submission.index for submission in submissions] == [0, 2, 1]
    finally:
        subprocess.run(["scancel", *sorted(set(arrays))], check=False)


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


def test_a_slurm_task_pickled_before_the_move_to_subpackages_loads_and_runs_the_job(
    tmp_path: Path,
) -> None:
    """The file is what submitit pickled for a merge task with laerebogen at 4cdde72 (flat
    modules): a task pending or requeued across the upgrade still runs the pipeline's job."""
    from submitit.helpers import DelayedSubmission

    old = DelayedSubmission.load(TEST_DATA / "slurm-task-before-subpackages.pkl")
    assert isinstance(old.function, CheckpointableTask)
    assert old.function.task == Task("/nonexistent/run", "grammar", -1, 2)
    assert isinstance(old.function.run, JobRunner) and old.function.run.engines is None
    with pytest.raises(LaerebogenError, match="/nonexistent/run"):
        old.function()  # the merge job of a run that is not there: the pipeline's own error
    requeued = old.function.checkpoint()
    assert requeued.function.run is old.function.run and requeued.function.task == old.function.task
