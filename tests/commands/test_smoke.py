"""The smoke run: the whole recipe on a few records beside the real run, and its projection."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from laerebogen.commands.smoke import (
    SMOKE_RECORDS,
    Projection,
    StepCost,
    project,
    smoke_config,
    smoke_dir,
)
from laerebogen.config.loading import load_config
from laerebogen.pipeline.plan import chain
from laerebogen.store.run_dir import RunStore
from tests.support.commands import laerebogen
from tests.support.runs import check_no_record_lost_or_duplicated


def test_the_smoke_config_changes_only_the_base_set() -> None:
    full = load_config("gemma-27b")
    smoke = smoke_config(full, 8)
    assert (smoke.generation.target, smoke.generation.first_round_prompts) == (8, 8)
    assert smoke.generation.max_rounds == 2 and smoke.name == "gemma-27b.smoke"
    assert smoke.models == full.models and smoke.slurm == full.slurm
    assert smoke.evolution == full.evolution and smoke.followups == full.followups
    assert smoke_dir(Path("runs/gemma-27b")) == Path("runs/gemma-27b.smoke")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, str]:
    """``laerebogen dataset --config tiny --smoke`` as a user runs it: 8 base records."""
    run = tmp_path_factory.mktemp("smoke") / "run"
    model_dir = f"model_dir={str(tiny_model_dir.parent)!r}"
    result = laerebogen(
        "dataset", "--config", "tiny", "--run", str(run), "--executor", "debug", "--smoke",
        "--set", model_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(smoke_dir(run) / "dataset.jsonl")
    return run, result.stderr


def test_a_smoke_run_runs_every_step_beside_the_real_run(smoke_run: tuple[Path, str]) -> None:
    run, _ = smoke_run
    assert not run.exists()  # the real run is untouched
    smoke = smoke_dir(run)
    steps = [plan.step for plan, merged in chain(RunStore(smoke)) if merged is not None]
    assert steps[0] == "generation-01"
    assert steps[-4:] == ["quality", "evolution-01", "evolution-02", "followups"]
    assert (smoke / "dataset.jsonl").is_file() and (smoke / "README.md").is_file()
    check_no_record_lost_or_duplicated(smoke)


def test_the_smoke_run_ends_with_measured_steps_and_the_projection(
    smoke_run: tuple[Path, str],
) -> None:
    run, out = smoke_run
    table = out[out.index("smoke run: ") :]
    for step in ("generation-01", "grammar", "quality", "evolution-01", "followups"):
        assert f"\n{step} " in table
    assert "projected full run (tiny: target 24, every step's inputs x" in table
    assert "CPU-hours (a CPU run: job-hours x" in table
    assert "An upper bound" in table
    full = load_config("tiny")
    projection = project(RunStore(smoke_dir(run)), smoke_config(full, SMOKE_RECORDS), full, "debug")
    assert projection.target == 24 and projection.base <= SMOKE_RECORDS
    assert projection.scale == pytest.approx(24 / projection.base)
    for step in projection.steps:
        assert step.full_inputs == math.ceil(step.inputs * projection.scale)
        assert step.compute_seconds > 0 and step.prompt_tokens > 0
        assert step.full_job_hours > 0 and step.full_wall_hours > 0
    # The debug executor loads each model once: the first generation shard pays for it.
    assert projection.steps[0].startup_seconds > 1


def test_a_step_without_a_model_counts_no_gpu_hours() -> None:
    def step(name: str, model: bool) -> StepCost:
        return StepCost(name, 10, 10, 1.0, 0.0, 1.0, 0, 0, {}, 100, 2, 3.0, 1.5, model=model)

    steps = [step("followups", True), step("code_check", False)]
    gpus = Projection(steps, 8, 80, 10.0, "GPU-hours", 4, 2)
    assert [gpus.step_hours(s) for s in steps] == [12.0, 0.0] and gpus.resource_hours == 12.0
    cpus = Projection(steps, 8, 80, 10.0, "CPU-hours", 2, 1)
    assert cpus.resource_hours == 12.0  # on CPUs every step's job-hours count
