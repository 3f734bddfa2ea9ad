"""The driver with the debug and local executors: the whole recipe, reruns, retries, reports."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from laerebogen.commands.dataset import run_dataset
from laerebogen.config.loading import load_config
from laerebogen.errors import RunFailedError
from laerebogen.launch.choose import make_launcher
from laerebogen.launch.task import MERGE, JobState
from laerebogen.pipeline.driver import Driver, Progress
from laerebogen.pipeline.jobs import job_runner
from laerebogen.pipeline.plan import assign_model, chain, plan_first, read_merge, read_plan
from laerebogen.records import Example
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from laerebogen.store.shards import LiveProgress
from tests.support.canned_engine import SECONDS_VARIABLE
from tests.support.commands import CONSOLE_SCRIPT, cli, laerebogen, sets
from tests.support.runs import (
    GENERATION_ONLY,
    RECIPE,
    check_no_record_lost_or_duplicated,
    dataset_lines,
    hold_driver_lock,
    hold_journal,
    release_after_first_failure,
    shard_submissions,
    steps_of,
    submissions,
)

RECIPE_STEPS = ["grammar", "quality", "evolution-01", "followups", "code_check", "annotate"]
# A 50/50 mixture of the tiny Llama and the tiny Qwen2 in base generation and the follow-ups.
QWEN2 = (
    "{ path = 'tiny-qwen2', dtype = 'float32', max_model_len = 2048, max_num_seqs = 32, "
    "enforce_eager = true }"
)
MIXTURE = (
    f"models.other={QWEN2}",
    "generation.model={ base = 0.5, other = 0.5 }",
    "followups.model={ instruct = 0.5, other = 0.5 }",
    "grammar.enabled=false",
    "quality.enabled=false",
    "evolution.generations=0",
    "generation.target=12",
)
DIRECTORIES = {"base": "tiny", "instruct": "tiny", "other": "tiny-qwen2"}


def test_a_mixture_of_two_models_writes_each_record_with_its_drawn_model(
    tmp_path: Path, tiny_model_dir: Path, tiny_qwen2_dir: Path
) -> None:
    config = load_config("tiny", [f"model_dir={str(tiny_model_dir.parent)!r}", *MIXTURE])
    run = tmp_path / "run"
    run_dataset(config, run, "debug", out=io.StringIO())
    check_no_record_lost_or_duplicated(run)
    store = RunStore(run)
    drawn: Counter[str] = Counter()
    for step in steps_of(run):
        plan = read_plan(store, step)
        assert plan is not None and set(plan.models) == {*config.stage_models(plan.stage)}
        for index, model in enumerate(plan.models):
            # A shard holds the inputs drawn for its model, and its records name that model.
            inputs = list(store.read_inputs(step, index))
            weights = config.stage_models(plan.stage)
            assert {assign_model(weights, config.seed, step, r.id) for r in inputs} == {model}
            made = {r.provenance.steps[-1].model for r in store.read_records(step, index)}
            assert made <= {DIRECTORIES[model]}
            drawn[model] += len(inputs)
    # Both models in the exported provenance, in shares close to the weights.
    exported = tmp_path / "ud.jsonl"
    assert (
        cli("export", "--run", str(run), "--out", str(exported), "--with-metadata").returncode == 0
    )
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    followups = Counter(
        step["model"] for line in lines for step in line["steps"]
        if step["stage"] == "followups"
    )  # fmt: skip
    assert set(followups) == {"tiny", "tiny-qwen2"}
    total = sum(drawn.values())
    assert abs(drawn["other"] - total / 2) <= 3 * math.sqrt(total) / 2  # binomial, 3 sigma
    # stats.json counts each model's work.
    stats = json.loads((run / "stats.json").read_text())
    assert stats["models"]["other"]["directory"] == "tiny-qwen2"
    assert stats["models"]["other"]["total"]["shards"] == sum(
        plan.models.count("other") for plan, _ in chain(store)
    )
    # The same config run again gives the same dataset.
    again = tmp_path / "again"
    run_dataset(config, again, "debug", out=io.StringIO())
    assert (again / "dataset.jsonl").read_bytes() == (run / "dataset.jsonl").read_bytes()


def test_a_model_that_fails_to_load_fails_only_its_own_shards(
    tmp_path: Path, tiny_model_dir: Path, tiny_qwen2_dir: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen2_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    overrides = [
        f"model_dir={str(tiny_model_dir.parent)!r}", *GENERATION_ONLY,
        "generation.first_round_prompts=6", "generation.prompts_per_shard=2",
        f"models.broken={{ path = {str(broken)!r}, dtype = 'float32', enforce_eager = true }}",
        "generation.model={ base = 0.5, broken = 0.5 }", "launch.max_retries=0",
    ]  # fmt: skip
    config = load_config("tiny", overrides)
    run = tmp_path / "run"
    with pytest.raises(RunFailedError) as failed:
        run_dataset(config, run, "local", out=io.StringIO())
    store = RunStore(run)
    plan = read_plan(store, "generation-01")
    assert plan is not None and set(plan.models) == {"base", "broken"}
    for index, model in enumerate(plan.models):
        assert store.is_done("generation-01", index) == (model == "base"), (index, model)
        named = f"generation-01 shard {index} ([models.{model}])"
        assert (named in str(failed.value)) == (model == "broken")


def test_debug_executor_runs_every_stage_into_a_dataset(reference_run: Path) -> None:
    steps = steps_of(reference_run)
    assert steps[0] == "generation-01" and steps[-len(RECIPE_STEPS) :] == RECIPE_STEPS
    check_no_record_lost_or_duplicated(reference_run)
    store = RunStore(reference_run)
    conversations = dataset_lines(reference_run)
    final: list[Example] = list(store.read_merged("annotate"))
    assert len(conversations) == len(final) > 0
    # The code check and annotation keep every conversation as the follow-ups left it, and
    # add their results.
    followups = list(store.read_merged("followups"))
    assert [(r.id, r.conversation()) for r in final] == [
        (r.id, r.conversation()) for r in followups
    ]
    for line, record in zip(conversations, final, strict=True):
        roles = [message["role"] for message in line["messages"]]
        assert roles[:2] == ["user", "assistant"] and len(roles) % 2 == 0
        assert line["messages"][0]["content"] == record.first_user_message()
        stages = [step.stage for step in record.provenance.steps]
        assert stages[0] == "generation"
        assert stages[-3:] == ["followups", "code_check", "annotate"]
        assert record.annotation is not None  # constrained: even the random model's reads
        assert record.code_check is not None  # checked (a random model writes no code)
        models = {step.stage: step.model for step in record.provenance.steps}
        assert models.pop("code_check") == "" and set(models.values()) == {"tiny"}
    # Follow-ups read every generation kept, shuffled together.
    pool = [r.id for r in store.read_merged("quality")] + [
        r.id for r in store.read_merged("evolution-01")
    ]
    followup_inputs = [r.id for r in store.read_inputs("followups", 0)]
    assert sorted(followup_inputs) == sorted(pool)


# Every source on the tiny model: a third of the target each for the base sources, the shipped
# import sample entering at quality, and nothing after quality.
ALL_SOURCES = (
    *GENERATION_ONLY,
    "generation.first_round_prompts=4",
    "generation.target=6",
    "generation.max_rounds=2",
    "quality.enabled=true",
    "sources.shares={self_instruct = 0.34, magpie = 0.33, grounded = 0.33}",
    'sources.imports.eksempel={path = "packaged:import_sample.jsonl", step = "quality"}',
)


def test_every_source_goes_through_its_rounds_into_the_dataset(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = load_config("tiny", [f"model_dir={str(tiny_model_dir.parent)!r}", *ALL_SOURCES])
    run = tmp_path / "run"
    out = io.StringIO()
    run_dataset(config, run, "debug", out=out)
    check_no_record_lost_or_duplicated(run)
    steps = steps_of(run)
    assert steps[:3] == ["generation-01", "magpie-01", "grounded-01"] and steps[-1] == "quality"
    assert "import-eksempel: 8 rows of " in out.getvalue()
    store = RunStore(run)
    final = list(store.read_merged("quality"))
    sources = {record.provenance.source for record in final}
    # The import's 8 tasks pass quality (a random judge keeps an example it cannot read).
    assert "import:eksempel" in sources and "self_instruct" in sources
    quality_inputs = [r for shard in range(read_plan(store, "quality").shards)  # type: ignore[union-attr]
                      for r in store.read_inputs("quality", shard)]  # fmt: skip
    made = {record.provenance.source for record in quality_inputs}
    assert {"self_instruct", "magpie", "import:eksempel"} <= made
    assert made <= {"self_instruct", "magpie", "grounded", "import:eksempel"}
    # The random judge rarely says yes: grounded tasks reach it, with their passages.
    judged = [
        rejection
        for step in steps
        if step.startswith("grounded")
        for shard in range(read_plan(store, step).shards)  # type: ignore[union-attr]
        for rejection in store.read_rejects(step, shard)
    ]
    assert "grounded" in made or any(r.reason == "unsupported" for r in judged)
    assert all(r.record.provenance.passage for r in judged if r.record is not None)
    for record in quality_inputs:
        assert record.provenance.steps[0].stage == {
            "self_instruct": "generation", "magpie": "magpie", "grounded": "grounded",
            "import:eksempel": "import",
        }[record.provenance.source]  # fmt: skip
        assert (record.provenance.passage is not None) == (record.provenance.source == "grounded")
    status = cli("status", "--run", str(run))
    assert "sources (kept/to deliver): self_instruct " in status.stdout
    export = cli(
        "export", "--run", str(run), "--out", str(tmp_path / "ud.jsonl"), "--with-metadata"
    )
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in (tmp_path / "ud.jsonl").read_text().splitlines()]
    assert {line["source"] for line in lines} == sources
    # Resumable as every step: a rerun finds each source's steps and the import done.
    before = (run / "dataset.jsonl").read_bytes()
    again = io.StringIO()
    run_dataset(config, run, "debug", out=again)
    assert all(f"{step}: done already" in again.getvalue() for step in steps)
    assert "screening" not in again.getvalue()  # the import is not read again
    assert (run / "dataset.jsonl").read_bytes() == before


def test_rerunning_a_finished_run_submits_nothing_and_keeps_the_dataset(
    reference_run: Path, recipe_overrides: list[str]
) -> None:
    before = (reference_run / "dataset.jsonl").read_bytes()
    jobs = {step: submissions(reference_run, step) for step in steps_of(reference_run)}
    out = io.StringIO()
    run_dataset(load_config("tiny", recipe_overrides), reference_run, "debug", out=out)
    assert all(submissions(reference_run, step) == jobs[step] for step in jobs)
    assert (reference_run / "dataset.jsonl").read_bytes() == before
    for step in jobs:
        assert f"{step}: done already" in out.getvalue()


def test_damaged_shards_are_made_again_by_the_rerun_as_verify_advises(
    tmp_path: Path, recipe_overrides: list[str], reference_run: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    intact = laerebogen("verify", "--run", str(run))
    assert intact.returncode == 0 and intact.stdout.strip().endswith(
        "shards verified, every file as its manifest says"
    ), intact.stdout
    for step in ("generation-01", "grammar"):
        data = run / step / "merged" / "shard-00000.msgpack.zst"
        damaged = bytearray(data.read_bytes())
        damaged[-1] ^= 0xFF
        data.write_bytes(bytes(damaged))
    found = laerebogen("verify", "--run", str(run))
    merged = run / "grammar" / "merged"
    data, manifest = merged / "shard-00000.msgpack.zst", merged / "shard-00000.manifest.json"
    assert found.returncode == 1, found.stderr
    assert (
        f"{data}: sha256 differs from the manifest (altered); delete {manifest} and rerun: "
        "the step is merged again from its shards"
    ) in found.stdout.splitlines()
    manifest.unlink()
    (run / "generation-01" / "merged" / "shard-00000.manifest.json").unlink()
    unmerged = laerebogen("verify", "--run", str(run)).stdout
    pattern = r"^generation-01: (\d+)/\1 shards done; a rerun merges$"  # then the rest
    assert re.search(pattern, unmerged, re.M), unmerged
    out = io.StringIO()
    run_dataset(load_config("tiny", recipe_overrides), run, "debug", out=out)
    for step in ("generation-01", "grammar"):
        assert f"{step}: done already" not in out.getvalue()
    assert "quality: done already" in out.getvalue()  # the same records: nothing after it redone
    again, before = (read_merge(RunStore(r), "generation-01") for r in (run, reference_run))
    assert again is not None and before is not None
    assert msgspec.structs.replace(again, seconds=0) == msgspec.structs.replace(before, seconds=0)
    assert (run / "dataset.jsonl").read_bytes() == (reference_run / "dataset.jsonl").read_bytes()
    assert laerebogen("verify", "--run", str(run)).returncode == 0
    # A shard of a merged step and an input shard of the last step, deleted as advised.
    shard = run / "grammar" / "shard-00000.msgpack.zst"
    inputs = run / "followups" / "inputs" / "shard-00000.msgpack.zst"
    for path in (shard, inputs):
        path.write_bytes(path.read_bytes()[:-1])
    advice = laerebogen("verify", "--run", str(run)).stdout
    shard_manifest = shard.parent / "shard-00000.manifest.json"
    assert (
        f"{shard}: {shard.stat().st_size} bytes but the manifest says {shard.stat().st_size + 1} "
        f"(truncated?); its step is merged and does not read it again; to make it again, delete "
        f"{shard_manifest} and {manifest} and rerun"
    ) in advice, advice
    assert f"delete {run / 'followups'} and rerun: the step is planned and run again" in advice
    shard_manifest.unlink()
    manifest.unlink()
    shutil.rmtree(run / "followups")
    out = io.StringIO()
    run_dataset(load_config("tiny", recipe_overrides), run, "debug", out=out)
    assert "followups: not planned (its directory is gone); planning it again" in out.getvalue()
    assert (run / "dataset.jsonl").read_bytes() == (reference_run / "dataset.jsonl").read_bytes()
    assert laerebogen("verify", "--run", str(run)).returncode == 0


def test_local_executor_gives_the_same_dataset_as_the_debug_one(
    tmp_path: Path, recipe_overrides: list[str], reference_run: Path
) -> None:
    """Also sharded differently: samples depend on records, not on shards."""
    run = tmp_path / "run"
    result = laerebogen(
        "dataset", "--config", "tiny", "--run", str(run), "--executor", "local",
        *sets([*recipe_overrides, "generation.prompts_per_shard=3"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(run / "dataset.jsonl")
    assert (run / "dataset.jsonl").read_bytes() == (reference_run / "dataset.jsonl").read_bytes()
    check_no_record_lost_or_duplicated(run)
    assert "generation-01: shards 2/2 done | " in result.stderr
    for step in steps_of(run):
        merge = shard_submissions(run, step, MERGE)
        assert len(merge) == 1 and Path(merge[0]["log"]).is_file(), step
        assert merge[0]["job_id"].startswith("pid-")


def test_a_shard_failing_every_time_stops_the_driver_with_a_report(
    tmp_path: Path, recipe_overrides: list[str], canned_engine: None
) -> None:
    """After the report, the same command finishes the run: the retry budget is per run."""
    run = tmp_path / "run"
    config = load_config("tiny", [*recipe_overrides, *GENERATION_ONLY, "launch.max_retries=1"])
    held = hold_journal(run, "generation-01", 0)
    with pytest.raises(RunFailedError) as failure:
        run_dataset(config, run, "local", out=io.StringIO())
    report = str(failure.value)
    tried = shard_submissions(run, "generation-01", 0)
    assert len(tried) == 2 and [s["attempt"] for s in tried] == [0, 1]
    assert "generation-01: 1 job(s) failed 2 time(s)" in report
    assert f"generation-01 shard 0: jobs {tried[0]['job_id']}, {tried[1]['job_id']}" in report
    assert tried[1]["log"] in report and "being written by another process" in report
    assert "run the same command again" in report
    assert read_merge(RunStore(run), "generation-01") is None
    held.close()
    run_dataset(config, run, "local", out=io.StringIO())
    again = shard_submissions(run, "generation-01", 0)
    assert len(again) == 3 and again[2]["session"] != tried[1]["session"]
    assert (run / "dataset.jsonl").is_file()
    check_no_record_lost_or_duplicated(run)


def test_a_shard_failing_once_is_retried_and_the_run_finishes(
    tmp_path: Path, recipe_overrides: list[str], canned_engine: None
) -> None:
    run = tmp_path / "run"
    config = load_config("tiny", [*recipe_overrides, *GENERATION_ONLY, "launch.max_retries=1"])
    releaser = release_after_first_failure(
        run, "generation-01", hold_journal(run, "generation-01", 0)
    )
    out = io.StringIO()
    run_dataset(config, run, "local", out=out)
    releaser.join()
    tried = shard_submissions(run, "generation-01", 0)
    assert len(tried) == 2 and tried[0]["session"] == tried[1]["session"]
    assert f"generation-01 shard 0: job {tried[0]['job_id']} ended without finishing" in (
        out.getvalue()
    )
    assert (run / "dataset.jsonl").is_file()
    check_no_record_lost_or_duplicated(run)


def test_the_live_line_shows_each_shards_phase_answers_and_time_left(tmp_path: Path) -> None:
    """Between commits, shards report their phase and answers; jobs without a report are
    queued (SLURM says PENDING) or starting."""
    config = load_config("tiny", list(RECIPE))
    store = start_run(config, tmp_path / "run")
    plan = plan_first(store, config)
    assert plan.shards == 5 and plan.inputs == 5
    start = Progress.of(store, plan, clock=time.monotonic() - 30)
    with store.open_shard(plan.step, 0) as writer:  # one input of one committed, 30 s ago
        writer.write_chunk([], [], consumed=[r.id for r in store.read_inputs(plan.step, 0)])
        writer.report(LiveProgress("generating", 5, 12, 300))
    with store.open_shard(plan.step, 2) as writer:
        writer.report(LiveProgress("loading model"))
    out = io.StringIO()
    driver = Driver(
        config, store, make_launcher("debug", config, store.root, job_runner("debug")), out=out
    )
    running, pending = JobState(True, "RUNNING"), JobState(True, "PENDING")
    jobs = {0: running, 1: pending, 2: running, 3: running}
    driver._show(plan, range(plan.shards), jobs, [4], start)
    line = out.getvalue().strip()
    assert line.startswith(
        f"{plan.step}: shards 0/5 done, 1 generating, 1 loading model, 1 queued, 1 starting, "
        "1 failed | 5/12 answered | 0 records | "
    ), line
    assert line.endswith(" | 10 tokens/s | 30 s, about 2 min left"), line  # 4 inputs, 30 s each


def test_a_missing_model_stops_the_run_before_any_job_is_submitted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [f"model_dir='{tmp_path}'", "models.instruct.path='not-prepared-here'"]
    result = laerebogen("dataset", "--config", "tiny", "--run", str(run), *sets(overrides))
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"laerebogen: error: model directory {tmp_path / 'not-prepared-here'}")
    # The tiny base model was built first; nothing was planned or submitted.
    assert (tmp_path / "tiny" / "config.json").is_file()
    assert not list(run.glob("*/jobs.json")) and not (run / "generation-01").exists()


def test_a_second_driver_is_refused_before_it_writes(
    tmp_path: Path, recipe_overrides: list[str]
) -> None:
    run = tmp_path / "run"
    holder = hold_driver_lock(run)
    try:
        sets = [f"--set={override}" for override in recipe_overrides]
        second = cli("dataset", "--config", "tiny", "--run", str(run), *sets)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2
    assert f"another driver is running this run (host {os.uname().nodename}, pid " in second.stderr
    assert not (run / "config.toml").exists()


def test_sigterm_stops_the_drivers_local_jobs_and_says_so(
    tmp_path: Path,
    recipe_overrides: list[str],
    canned_engine: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `timeout`, a batch system or a closed terminal do to a driver: no job is left."""
    monkeypatch.setenv(SECONDS_VARIABLE, "60")  # the jobs are still running when it arrives
    run = tmp_path / "run"
    sets = [f"--set={override}" for override in [*recipe_overrides, *GENERATION_ONLY]]
    command = [CONSOLE_SCRIPT, "dataset", "--config", "tiny", "--run", str(run), *sets]
    driver = subprocess.Popen([*command, "--executor", "local"], stderr=subprocess.PIPE, text=True)
    jobs = run / "generation-01" / "jobs.json"
    deadline = time.monotonic() + 120
    while not (jobs.exists() and json.loads(jobs.read_text())["submissions"]):
        assert time.monotonic() < deadline and driver.poll() is None, "no job was submitted"
        time.sleep(0.2)
    pids = [int(s["job_id"].split("-")[1]) for s in json.loads(jobs.read_text())["submissions"]]
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 128 + signal.SIGTERM
    assert re.search(r"stopped \d local job\(s\): generation-01 shard \d", err), err[-2000:]
    assert "run the same command again to continue" in err
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
