"""Every script in ``benchmarks/`` runs on small inputs and ends with its RESULT line.

The figures of such small runs mean nothing. What this catches is a benchmark broken by a
change elsewhere (a signature it calls, a config key it sets), which ``make bench`` would
otherwise only find when someone sits down to measure: both vLLM benchmarks once called
``sampling_seed`` with an argument it had lost. So the benchmarks of the local models run on the
session's tiny model, linked under those models' names: the same code, without the 4-5 minutes
that Gemma 3 270M and SmolLM2 cost on 2 cores (the local models' own behaviour is checked by
test_local_recipe.py and test_readme.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPOSITORY
from tests.support.slurm_cluster import require_slurm

BENCHMARKS = REPOSITORY / "benchmarks"
# Small arguments of each benchmark, and the keys its RESULT line must carry.
SMALL_RUNS: dict[str, tuple[list[str], set[str]]] = {
    "browse.py": (
        ["--conversations", "400"],
        {"conversations", "seconds", "export_seconds", "ratio_to_export", "peak_mib", "data_mib"},
    ),
    "code_check.py": (
        ["--snippets", "40", "--baseline", "10"],
        {"minutes_10000", "sandbox_vs_plain", "isolation", "ok"},
    ),
    "constrained_decoding.py": (
        ["--requests", "2", "--max-tokens", "4"],
        {"free_slowdown", "bounded_slowdown", "free_vs_bounded_speedup"},
    ),
    "deterministic.py": (
        ["--requests", "2"],
        {"default_differing", "deterministic_differing", "slowdown"},
    ),
    "decontamination.py": (
        ["--conversations", "2000", "--items", "500", "--baseline", "200"],
        {"n", "seconds", "peak_mib", "speedup", "planted_found", "near_missed", "clean_matched"},
    ),
    "dedup.py": (["--brute", "60", "--sizes", "300"], {"identical", "speedup_60"}),
    "engine_overhead.py": (
        ["--prompts", "4", "--max-tokens", "4", "--repeats", "1"],
        {"overhead_ratio", "raw_s", "engine_s"},
    ),
    "langfilter.py": (
        ["--triples", "200", "--conversations", "100", "--repeats", "1"],
        {
            "examples_per_s_per_core",
            "screen_vs_lingua",
            "followup_minutes_175000",
            "danish_kept_pct",
            "whole_accepted_pct",
            "mixed_accepted_pct",
            "cores",
        },
    ),
    "local_instruct_model.py": (
        ["--tasks", "1"],
        {"gemma_pass_rate", "smollm2_pass_rate", "best"},
    ),
    "magpie_steering.py": (
        ["--slots", "2"],
        {"system_new", "user_start_new", "none_new", "best"},
    ),
    "records_io.py": (
        ["--records", "500", "--repeats", "1", "--chunk", "100"],
        {"records", "roundtrip_speedup", "size_ratio"},
    ),
    "stage_overhead.py": (
        ["--shards", "20", "--keep-cluster"],
        {"stage_overhead_s", "plan_20_s", "submit_20_s", "sbatch_baseline_s", "ok"},
    ),
    "task_map.py": (
        ["--points", "300", "--texts", "3000", "--check", "2000"],
        {"points", "seconds", "seconds_sampled", "peak_mib", "same_across_threads"},
    ),
}
RESULT_LINE = re.compile(r"RESULT(?: [a-z0-9_]+=\S+)+")
# Benchmarks on the local models, and the models they run.
MODEL_BENCHMARKS = {
    "constrained_decoding.py", "deterministic.py", "local_instruct_model.py", "magpie_steering.py",
}  # fmt: skip
LOCAL_MODELS = ("gemma-3-270m", "smollm2-135m-instruct")
ENGINE_BENCHMARKS = {*MODEL_BENCHMARKS, "engine_overhead.py", "stage_overhead.py"}
SLURM_BENCHMARKS = {"stage_overhead.py"}
pytestmark = pytest.mark.slow  # every small run is a subprocess loading lingua, vLLM or SLURM


def benchmark(script: str) -> object:
    """``script`` as a test parameter, marked ``engine`` or ``slurm`` by what it starts."""
    marks = [pytest.mark.engine] if script in ENGINE_BENCHMARKS else []
    marks += [pytest.mark.slurm] if script in SLURM_BENCHMARKS else []
    return pytest.param(script, marks=marks)


def test_every_benchmark_has_a_small_run() -> None:
    assert sorted(SMALL_RUNS) == sorted(path.name for path in BENCHMARKS.glob("*.py"))


def tiny_as_local_models(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model directory holding the tiny model under each local model's name."""
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    for name in LOCAL_MODELS:
        (model_dir / name).symlink_to(tiny_model_dir, target_is_directory=True)
    return model_dir


@pytest.mark.parametrize("script", [benchmark(script) for script in sorted(SMALL_RUNS)])
def test_benchmark_runs_and_reports(
    script: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    arguments, keys = SMALL_RUNS[script]
    if script in SLURM_BENCHMARKS:
        require_slurm()
    if script in ENGINE_BENCHMARKS:  # the session's tiny model, not one built again
        tiny = request.getfixturevalue("tiny_model_dir")
        models = tiny_as_local_models(tmp_path, tiny) if script in MODEL_BENCHMARKS else tiny.parent
        arguments = [*arguments, "--model-dir", str(models)]
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    last = finished.stdout.rstrip("\n").splitlines()[-1]
    assert RESULT_LINE.fullmatch(last), last
    figures = dict(pair.split("=", 1) for pair in last.split()[1:])
    assert keys <= figures.keys(), last
    if script == "dedup.py":  # the fast dedup decides exactly as brute force does
        assert figures["identical"] == "True", last
    if script == "decontamination.py":  # the default n finds every copy and no clean text
        assert figures["planted_found"] == "1.00" and figures["clean_matched"] == "0", last
    if script == "task_map.py":  # the map is the same whatever the number of threads
        assert figures["same_across_threads"] == "True", last
    if script == "deterministic.py":  # batching changes nothing in deterministic mode
        assert figures["deterministic_differing"] == "0", last
