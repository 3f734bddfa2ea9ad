"""Access to a real SLURM controller for the tests that need one.

``make test`` starts the single-node cluster of ``slurm/local-cluster.sh`` and sets
``LAEREBOGEN_SLURM_TESTS=required``, so a missing or broken cluster fails those tests instead of
silently skipping them; without that variable they are skipped when no cluster answers, and
``LAEREBOGEN_SLURM_TESTS=skip`` (``make test SLURM=0``) always skips them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

# Node states in which the cluster runs jobs (sinfo's %T, without flag characters such as '*').
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}
_COMMAND_TIMEOUT = 15.0


@dataclass(frozen=True)
class SlurmCluster:
    """What SLURM tests need to know about the cluster they run on."""

    max_array_size: int
    partition: str


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
    )


@functools.cache
def _unavailable_reason() -> str | None:
    """Why no usable SLURM cluster answers, or None; checked once per session."""
    hint = "start one with `make cluster`"
    for command in ("scontrol", "sinfo", "sacct", "sbatch"):
        if shutil.which(command) is None:
            return f"no SLURM cluster: {command} is not on PATH; {hint}"
    try:
        ping = _run("scontrol", "ping")
        if "is UP" not in ping.stdout:
            answer = (ping.stdout or ping.stderr).strip().replace("\n", " ")
            return f"no SLURM cluster: scontrol ping says {answer!r}; {hint}"
        sinfo = _run("sinfo", "-h", "-o", "%T")
        states = {line.strip().rstrip("*~#!%$@^-+") for line in sinfo.stdout.splitlines()}
        if not states & USABLE_NODE_STATES:
            return f"SLURM has no usable node (states: {sorted(states)}); {hint}"
        sacct = _run("sacct", "-n", "-X", "-S", "now")
        if sacct.returncode != 0:
            error = sacct.stderr.strip().replace("\n", " ")
            return f"sacct fails ({error}); submitit needs SLURM accounting (slurmdbd); {hint}"
    except subprocess.TimeoutExpired as error:
        return f"SLURM did not answer: {' '.join(error.cmd)} timed out; {hint}"
    return None


def require_slurm() -> None:
    """Return when a SLURM cluster answers; else fail (when required) or skip the test."""
    mode = os.environ.get("LAEREBOGEN_SLURM_TESTS", "")
    if mode == "skip":
        pytest.skip("SLURM tests are switched off (LAEREBOGEN_SLURM_TESTS=skip)")
    reason = _unavailable_reason()
    if reason is None:
        return
    if mode == "required":
        pytest.fail(f"{reason} (LAEREBOGEN_SLURM_TESTS=required)", pytrace=False)
    pytest.skip(reason)


def max_array_size() -> int:
    """The controller's MaxArraySize, which bounds the size of every job array."""
    config = _run("scontrol", "show", "config")
    config.check_returncode()
    for line in config.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    raise RuntimeError("scontrol show config has no MaxArraySize")


def default_partition() -> str:
    """The default partition (sinfo marks it with '*'), else the first one."""
    names = _run("sinfo", "-h", "-o", "%P").stdout.split()
    if not names:
        raise RuntimeError("sinfo lists no partition")
    return next((name for name in names if name.endswith("*")), names[0]).rstrip("*")


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """A real SLURM cluster that answers (see :func:`require_slurm`), and its limits."""
    require_slurm()
    return SlurmCluster(max_array_size=max_array_size(), partition=default_partition())
