"""The single-node SLURM cluster of slurm/local-cluster.sh runs jobs, accounts them and restarts
nothing when started twice: the SLURM tests build on that."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.paths import REPOSITORY
from tests.support.slurm_cluster import SlurmCluster

SCRIPT = REPOSITORY / "slurm" / "local-cluster.sh"
MARKER = "# written by laerebogen slurm/local-cluster.sh"


def _config_value(key: str) -> str:
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True, timeout=15
    )
    for line in config.stdout.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    raise KeyError(key)


@pytest.fixture
def local_cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    """The cluster, when it is the one local-cluster.sh manages (not a real installation)."""
    conf = Path(_config_value("SLURM_CONF"))
    if not conf.is_file() or conf.read_text().splitlines()[:1] != [MARKER]:
        pytest.skip(f"{conf} was not written by slurm/local-cluster.sh")
    return slurm_cluster


def _sacct_state(job_id: str) -> str:
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
        timeout=15,
    )
    return sacct.stdout.strip()


def test_sbatch_job_completes_and_sacct_sees_it(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    tmp_path.chmod(0o777)  # jobs may run as another user than the tests
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--partition={slurm_cluster.partition}",
            f"--chdir={tmp_path}",
            f"--output={tmp_path}/job-%j.out",
            "--time=1",
            "--wrap",
            "echo hello from slurm",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=15,
    )
    job_id = submit.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        state = _sacct_state(job_id)
        if state and state not in {"PENDING", "RUNNING", "COMPLETING"}:
            break
        time.sleep(0.2)
    assert state == "COMPLETED", f"job {job_id} ended as {state!r}"
    assert (tmp_path / f"job-{job_id}.out").read_text() == "hello from slurm\n"


def test_status_reports_a_usable_cluster(local_cluster: SlurmCluster) -> None:
    status = subprocess.run(
        [str(SCRIPT), "status"], capture_output=True, text=True, check=False, timeout=30
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"MaxArraySize: {local_cluster.max_array_size}" in status.stdout


def test_second_start_is_quick_and_restarts_nothing(local_cluster: SlurmCluster) -> None:
    pid_file = Path(_config_value("SlurmctldPidFile"))
    pid_before = pid_file.read_text().strip()
    cpus = subprocess.run(
        ["sinfo", "-h", "-n", "localhost", "-o", "%c"],
        capture_output=True,
        text=True,
        check=True,
        timeout=15,
    ).stdout.strip()
    # The running cluster's own knobs, so that start has nothing to change.
    env = {
        **os.environ,
        "LOCAL_SLURM_MAX_ARRAY_SIZE": str(local_cluster.max_array_size),
        "LOCAL_SLURM_CPUS": cpus,
    }
    started = time.monotonic()
    start = subprocess.run(
        [str(SCRIPT), "start"], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    elapsed = time.monotonic() - started
    assert start.returncode == 0, start.stdout + start.stderr
    assert elapsed < 10, f"an idempotent start took {elapsed:.1f} s"
    assert "starting" not in start.stdout
    assert pid_file.read_text().strip() == pid_before
