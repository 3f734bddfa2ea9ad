"""``laerebogen doctor``: a pass/fail table, non-zero exit status on any failure."""

from __future__ import annotations

import os
from pathlib import Path

from laerebogen.codecheck.sandbox import available_isolation
from tests.support.commands import cli
from tests.support.slurm_cluster import SlurmCluster


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """The table as check -> (result, detail)."""
    table = {}
    for line in stdout.splitlines()[1:]:
        name, _, rest = line.partition("  ")
        result, _, detail = rest.strip().partition("  ")
        table[name.strip()] = (result, detail.strip())
    return table


def test_doctor_without_a_config_checks_the_software() -> None:
    result = cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert set(table) == {"python", "packages", "vllm", "submitit"}
    assert all(outcome == "pass" for outcome, _ in table.values())
    assert "device cpu" in table["vllm"][1] and "laerebogen 0.1.0" in table["packages"][1]


def test_doctor_with_a_config_checks_slurm_models_and_the_run_directory(
    slurm_cluster: SlurmCluster, tmp_path: Path, tiny_model_dir: Path
) -> None:
    model_dir = f"model_dir={str(tiny_model_dir.parent)!r}"
    run = tmp_path / "run"
    result = cli(
        "doctor", "--config", "tiny", "--run", str(run), "--executor", "slurm", "--set", model_dir,
        "--set", "code_check.enabled=true",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert table["code sandbox"][1].startswith(f"{available_isolation()}: ")
    checks = (
        "sbatch",
        "sacct",
        "model (base)",
        "model (instruct)",
        "code sandbox",
        "run directory",
    )
    for check in checks:
        assert table[check][0] == "pass", (check, table[check])
    assert "GiB free" in table["free disk"][1]


def test_doctor_fails_with_a_row_per_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli(
        "doctor", "--config", "tiny", "--run", str(blocker / "run"),
        "--set", f"model_dir={str(tmp_path / 'models')!r}",
        "--set", f"container.image={str(tmp_path / 'missing.sif')!r}",
    )  # fmt: skip
    assert result.returncode == 1
    table = rows(result.stdout)
    missing = f"{tmp_path / 'missing.sif'}: no such image (build it with make container)"
    assert table["image"] == ("FAIL", missing)
    model_result, model_detail = table["model (base)"]
    assert model_result == "FAIL" and "laerebogen model tiny" in model_detail
    assert table["run directory"][0] == "FAIL"
    if not any(Path(d, "apptainer").exists() for d in os.environ["PATH"].split(":")):
        assert table["apptainer"] == ("FAIL", "apptainer is not on PATH")
    assert "check(s) failed: " in result.stderr and "image" in result.stderr
