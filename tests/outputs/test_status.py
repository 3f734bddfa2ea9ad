"""``laerebogen status``: every number of the table, from state files and manifests only.

Run directories are built by hand with the store, as the driver, shard and merge jobs leave
them: a merged step, then a running one with a finished shard, a shard with a committed chunk
but no manifest, and a shard that is only submitted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from laerebogen.config.loading import load_config
from laerebogen.errors import StoreError
from laerebogen.launch.task import MERGE, Submission
from laerebogen.outputs.status import (
    SourceStatus,
    StatusReport,
    StepStatus,
    render_table,
    run_status,
    show_status,
    sources_status,
    status_json,
    totals,
)
from laerebogen.pipeline.jobs import StepJobs, jobs_file
from laerebogen.pipeline.plan import MergeResult, merge_file, plan_first, write_step
from laerebogen.store import run_dir, shards
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.finished_run import finished_run
from tests.support.records import examples, finish_shard, make_rejection

# tiny: 2 prompt slots per generation shard, 8 records per grammar shard; 2 GPUs per shard job.
# Shards ask for their model's tensor_parallel_size in GPUs (gpu_job.gpus is the most).
TWO_GPUS = [f"models.{name}.tensor_parallel_size=2" for name in ("base", "instruct")]
CONFIG = load_config("tiny", ["slurm.gpu_job.gpus=2", "generation.max_rounds=1", *TWO_GPUS])


def submit(store: RunStore, step: str, indices: Sequence[int]) -> None:
    """Record one submission per entry of ``indices`` (a repeated index is a retry)."""
    attempts: dict[int, int] = {}
    submissions = []
    for number, index in enumerate(indices):
        attempts[index] = attempts.get(index, -1) + 1
        job = f"1000_{number}"
        submissions.append(Submission(index, attempts[index], job, f"logs/{job}.out", "s1", 0.0))
    store.write_state(jobs_file(step), StepJobs(submissions))


def merge_result(
    store: RunStore, step: str, kept: int, rejected: dict[str, int], nxt: str | None
) -> None:
    """The merged set and merge result of ``step``, written as the merge job would."""
    records = examples(f"{step}-merged", kept)
    with store.open_merged(step) as writer:
        writer.write_chunk(records, [], consumed=[record.id for record in records])
        writer.finish()
    records_in = kept + sum(rejected.values())
    result = MergeResult(step, records_in, kept, rejected, nxt, seconds=1.0)
    store.write_state(merge_file(step), result)


def build_run(tmp_path: Path) -> Path:
    """generation-01 merged (2 shards, a shard and the merge retried once), then grammar
    running: shard 0 finished, shard 1 with one committed chunk, shard 2 only submitted."""
    store = start_run(CONFIG, tmp_path / "run")
    plan = plan_first(store, CONFIG)
    assert (plan.step, plan.shards, plan.inputs) == ("generation-01", 2, 4)
    finish_shard(
        store, "generation-01", 0, 5, ["too_long", "too_long", "not_json"],
        prompt_tokens=1000, completion_tokens=20_000, wall_seconds=1800.0,
    )  # fmt: skip
    finish_shard(
        store, "generation-01", 1, 6, ["too_long"],
        prompt_tokens=1500, completion_tokens=30_500, wall_seconds=1800.0,
    )  # fmt: skip
    submit(store, "generation-01", [0, 1, 1, MERGE, MERGE])
    merge_result(store, "generation-01", 7, {"near_duplicate": 3, "not_danish": 1}, "grammar")

    grammar = write_step(store, CONFIG, ("grammar", "grammar", 0), examples("base", 20))
    assert (grammar.shards, grammar.inputs) == (3, 20)
    finish_shard(
        store, "grammar", 0, 7, ["rewrite"],
        prompt_tokens=4000, completion_tokens=2_000_000, wall_seconds=900.0,
    )  # fmt: skip
    inputs = [record.id for record in store.read_inputs("grammar", 1)]
    with store.open_shard("grammar", 1) as writer:  # killed after its first chunk
        writer.write_chunk(
            examples("grammar-1", 3),
            [make_rejection(0, "rewrite")],
            inputs[:4],
            prompt_tokens=700,
            completion_tokens=300,
        )
    submit(store, "grammar", [0, 1, 1, 2])
    return store.root


def test_a_merged_and_a_running_step_are_counted_from_manifests_and_journals(
    tmp_path: Path,
) -> None:
    generation, grammar = run_status(build_run(tmp_path))
    assert generation == StepStatus(
        step="generation-01",
        stage="generation",
        state="merged",
        shards=2,
        done=2,
        submitted=2,  # finished shards were submitted too
        failed_attempts=2,  # shard 1 and the merge
        records_in=4,
        records_out=11,
        kept=7,
        rejected={"not_json": 1, "too_long": 3},
        merge_rejected={"near_duplicate": 3, "not_danish": 1},
        prompt_tokens=2500,
        completion_tokens=50_500,
        wall_seconds=3600.0,
        gpus_per_shard=2,
        gpu_hours=2.0,
    )
    # Shard 1's committed chunk counts for records and completion tokens; its rejection and
    # prompt tokens only once it finishes (the journal's progress does not carry them).
    assert grammar == StepStatus(
        step="grammar",
        stage="grammar",
        state="running",
        shards=3,
        done=1,
        submitted=3,
        failed_attempts=1,
        records_in=20,
        records_out=10,
        kept=None,
        rejected={"rewrite": 1},
        merge_rejected={},
        prompt_tokens=4000,
        completion_tokens=2_000_300,
        wall_seconds=900.0,
        gpus_per_shard=2,
        gpu_hours=0.5,
    )
    total = totals([generation, grammar])
    assert (total.steps, total.shards, total.done, total.submitted) == (2, 5, 3, 5)
    assert (total.failed_attempts, total.prompt_tokens) == (3, 6500)
    assert (total.completion_tokens, total.wall_seconds, total.gpu_hours) == (2_050_800, 4500, 2.5)
    assert total.rejected == {"not_json": 1, "rewrite": 1, "too_long": 3}


def test_the_table_has_a_row_per_step_a_total_and_the_export_footer(tmp_path: Path) -> None:
    run = build_run(tmp_path)
    table = render_table(run_status(run), exported=False)
    header, generation, grammar, total, footer = table.splitlines()
    assert header.split()[:3] == ["step", "state", "shards"]
    assert generation.split()[:12] == [
        "generation-01", "merged", "2/2", "2", "2", "4", "11", "7", "2.5k", "50.5k", "2.00",
        "too_long",
    ]  # fmt: skip
    assert "too_long 3" in generation and "merge:near_duplicate 3" in generation
    assert generation.endswith("+1 more")
    assert grammar.split()[:11] == [
        "grammar", "running", "1/3", "3", "1", "20", "10", "-", "4.0k", "2.0M", "0.50",
    ]  # fmt: skip
    assert grammar.endswith("rewrite 1")
    assert total.split()[:7] == ["total", "3/5", "5", "3", "6.5k", "2.1M", "2.50"]
    assert footer == "exported: no (dataset.jsonl)"
    with_sources = render_table(
        run_status(run),
        sources=[
            SourceStatus("self_instruct", 19, 7, 1),
            SourceStatus("magpie", 5, 0, 0),
            SourceStatus("import:wiki", None, 40, 1),
        ],
    )
    assert with_sources.splitlines()[-1] == (
        "sources (kept/to deliver): self_instruct 7/19 (1 round), magpie 0/5 (0 rounds), "
        "import:wiki 40 (imported)"
    )
    # Aligned: numbers end where their header ends, in every row.
    end = header.index("GPU-h") + len("GPU-h")
    assert generation[end - 4 : end] == "2.00" and grammar[end - 4 : end] == "0.50"
    assert total[end - 4 : end] == "2.50"


def test_json_round_trips_with_the_totals(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = build_run(tmp_path)
    statuses = run_status(run)
    report = msgspec.json.decode(status_json(statuses, exported=True), type=StatusReport)
    assert report == StatusReport(statuses, totals(statuses), exported=True)
    show_status(str(run), as_json=True)
    printed = msgspec.json.decode(capsys.readouterr().out, type=StatusReport)
    # The one base source must deliver the whole target; its merged round kept 7.
    sources = [SourceStatus("self_instruct", target=24, kept=7, rounds=1)]
    assert printed == StatusReport(statuses, totals(statuses), exported=False, sources=sources)
    assert sources_status(run) == sources


def test_status_reads_no_record_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = build_run(tmp_path)
    before = run_status(run)
    for path in run.rglob("*.msgpack.zst"):  # outputs, rejections, inputs and merged sets
        path.write_bytes(b"not zstd at all")

    def refuse(*_: object) -> None:
        raise AssertionError("status read record data")

    for module in (shards, run_dir):
        for name in ("iter_frames", "iter_file_records", "verify_file", "sha256_of_file"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    assert run_status(run) == before
    for path in run.rglob("*.msgpack.zst"):
        path.unlink()
    assert run_status(run) == before
    show_status(str(run))
    assert "generation-01" in capsys.readouterr().out


def test_steps_go_from_planned_to_merging_to_merged_and_the_chain_ends(tmp_path: Path) -> None:
    store = start_run(CONFIG, tmp_path / "run")
    plan_first(store, CONFIG)
    [status] = run_status(store.root)
    assert (status.state, status.done, status.submitted, status.records_out) == ("planned", 0, 0, 0)
    assert status.kept is None and status.gpu_hours == 0.0
    submit(store, "generation-01", [0])
    assert run_status(store.root)[0].state == "running"
    finish_shard(store, "generation-01", 0, 2)
    finish_shard(store, "generation-01", 1, 3)
    assert run_status(store.root)[0].state == "merging"
    merge_result(store, "generation-01", 5, {}, None)  # no next step: the run exports next
    [status] = run_status(store.root)
    assert (status.state, status.kept, status.records_out) == ("merged", 5, 5)
    assert "merged" in render_table([status]).splitlines()[1]


def test_a_cpu_config_has_no_gpu_hours(tmp_path: Path) -> None:
    config = load_config("tiny", ["generation.max_rounds=1"])  # gpu_job.gpus = 0
    store = start_run(config, tmp_path / "run")
    plan_first(store, config)
    finish_shard(store, "generation-01", 0, 1, wall_seconds=3600.0)
    [status] = run_status(store.root)
    assert (status.wall_seconds, status.gpus_per_shard, status.gpu_hours) == (3600.0, 0, 0.0)


def test_a_step_without_a_model_holds_no_gpu(tmp_path: Path) -> None:
    overrides = ["slurm.gpu_job.gpus=2", *TWO_GPUS]
    store, _ = finished_run(tmp_path, overrides=overrides, code_checks=[()] * 6)
    gpus = {status.step: status.gpus_per_shard for status in run_status(store.root)}
    assert gpus == {"generation-01": 2, "followups": 2, "code_check": 0, "annotate": 2}


def test_gpu_hours_follow_each_shards_model(tmp_path: Path) -> None:
    mixture = load_config("tiny", [
        "slurm.gpu_job.gpus=4", "generation.max_rounds=1", "generation.first_round_prompts=40",
        "generation.prompts_per_shard=40", "models.big={ path = 'big', tensor_parallel_size = 4 }",
        "generation.model={ base = 0.5, big = 0.5 }",
    ])  # fmt: skip
    store = start_run(mixture, tmp_path / "run")
    plan = plan_first(store, mixture)
    assert plan is not None and sorted(plan.models) == ["base", "big"]
    for index in range(plan.shards):
        finish_shard(store, "generation-01", index, 1, wall_seconds=3600.0)
    [status] = run_status(store.root)
    assert (status.gpus_per_shard, status.gpu_hours) == (4, 5.0)  # 1 GPU-hour + 4 GPU-hours


def test_a_run_without_steps_renders_an_empty_table(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = start_run(CONFIG, tmp_path / "run")
    assert run_status(store.root) == []
    store.write_text("dataset.jsonl", "")
    show_status(str(store.root))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step")
    assert lines[1] == "(no step planned yet)"
    assert lines[2].split() == ["total", "0/0", "0", "0", "0", "0", "0.00", "-"]
    assert lines[-1] == "exported: yes (dataset.jsonl)"
    report = msgspec.json.decode(status_json([]), type=StatusReport)
    assert report.steps == [] and report.total.steps == 0 and report.exported is None


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_a_directory_that_is_not_a_run_is_one_line_error(tmp_path: Path, where: str) -> None:
    directory = tmp_path / where
    if where == "empty":
        directory.mkdir()
    with pytest.raises(StoreError, match="not a run directory") as error:
        run_status(directory)
    assert "\n" not in str(error.value)
    with pytest.raises(StoreError):
        show_status(str(directory))


def test_status_command_prints_the_table_and_json(reference_run: Path) -> None:
    from tests.support.commands import cli

    table = cli("status", "--run", str(reference_run))
    assert table.returncode == 0, table.stderr
    assert "followups" in table.stdout and "exported: yes" in table.stdout
    as_json = cli("status", "--run", str(reference_run), "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["exported"] is True
