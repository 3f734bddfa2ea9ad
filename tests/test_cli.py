"""The command line, run as users run it: as a subprocess of the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from laerebogen.cli import _gather_overrides
from laerebogen.config.loading import load_config
from laerebogen.errors import LaerebogenError
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.commands import cli
from tests.support.records import write_shard


def test_help_lists_commands_with_one_line_docs() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("config", "dataset", "inspect", "version"):
        assert f"     {command}\n" in result.stdout
    assert "Print the records of a shard or rejects file" in result.stdout


def test_python_dash_m_is_the_same_cli() -> None:
    module = subprocess.run(
        [sys.executable, "-m", "laerebogen", "version"], capture_output=True, text=True, check=True
    )
    assert module.stdout == cli("version").stdout != ""


def test_config_show_prints_resolved_toml_with_overrides() -> None:
    result = cli("config", "show", "tiny", "--set", "generation.target=77", "--set=seed=3")
    assert result.returncode == 0, result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["generation"]["target"] == 77 and shown["seed"] == 3


def test_user_errors_are_one_line_without_traceback_unless_debug(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[models.base]\npath = "b"\n[models.instruct]\npath = "i"\n[slurm]\nqueue = "x"\n'
    )
    result = cli("config", "show", str(bad))
    assert result.returncode == 2
    assert result.stderr == f"laerebogen: error: {bad}: unknown key 'slurm.queue'\n"
    debug = cli("config", "show", str(bad), "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_a_mistyped_flag_runs_nothing_and_help_has_no_banner(tmp_path: Path) -> None:
    run = tmp_path / "run"
    typo = cli("dataset", "--config", "tiny", "--run", str(run), "--executer", "debug")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr == (
        "laerebogen: error: dataset: unknown flag --executer: did you mean --executor?\n"
    )
    assert not run.exists()
    help_page = cli("dataset", "--help")
    assert help_page.returncode == 0 and help_page.stderr == ""
    assert help_page.stdout.startswith("NAME\n    laerebogen dataset - Run the whole recipe")


def test_inspect_prints_json_lines_with_limit(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 0, 12)
    paths = store.output_paths("generation", 0)
    records = cli("inspect", str(paths.data), "--limit", "3")
    assert records.returncode == 0, records.stderr
    lines = [json.loads(line) for line in records.stdout.splitlines()]
    assert len(lines) == 3 and lines[0]["instruction"].startswith("Forklar kort")
    assert lines[0]["provenance"]["steps"][0]["stage"] == "generation"
    rejects = cli("inspect", str(paths.rejects))
    assert [json.loads(line)["reason"] for line in rejects.stdout.splitlines()] == [
        "not_danish"
    ] * 3
    manifest = cli("inspect", str(paths.manifest))
    assert json.loads(manifest.stdout)["outputs"] == 12


def test_inspect_of_a_truncated_shard_is_a_one_line_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_shard(store, "generation", 0, 12)
    paths = store.output_paths("generation", 0)
    paths.data.write_bytes(paths.data.read_bytes()[:-4])
    result = cli("inspect", str(paths.data))
    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1
        and "delete" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_dataset_saves_the_config_and_refuses_another_recipe_for_the_same_run(
    tmp_path: Path,
) -> None:
    """Where the work runs may change between reruns; what it makes may not."""
    run, models = tmp_path / "run", tmp_path / "no-models"
    # A model no command can prepare: the run stops before its first job.
    model_dir = f"--set=model_dir={str(models)!r}"
    paths = ("--set=models.base.path='my-base'", "--set=models.instruct.path='my-base'")
    missing = [model_dir, *paths]
    first = cli("dataset", "--config", "tiny", "--run", str(run), "--executor", "debug", *missing)
    assert first.returncode == 2
    assert f"{models / 'my-base'} not found" in first.stderr and "Traceback" not in first.stderr
    assert not run.exists()  # stopped before writing: the fixed command is no other recipe
    overrides = [value.removeprefix("--set=") for value in missing]
    start_run(load_config("tiny", overrides), run)
    assert tomllib.loads((run / "config.toml").read_text())["name"] == "tiny"
    moved = cli(
        "dataset", "--config", "tiny", "--run", str(run), "--executor", "debug", *missing,
        "--set", "slurm.partition='gpu'", "--set", "launch.max_retries=5",
    )  # fmt: skip
    assert "another configuration" not in moved.stderr and "not found" in moved.stderr
    other = cli(
        "dataset", "--config", "tiny", "--run", str(run), *missing, "--set", "seed=99"
    )  # fmt: skip
    assert other.returncode == 2 and "another configuration (seed: 7 -> 99); " in other.stderr
    assert f"continue it with --config {run / 'config.toml'}, or start a new --run" in other.stderr
    fresh = tmp_path / "fresh"
    bad_seeds = cli("dataset", "--config", "tiny", "--run", str(fresh), "--set=seed_file='/no'")
    assert bad_seeds.returncode == 2 and "/no: no such seed file" in bad_seeds.stderr
    assert not fresh.exists()  # nothing to refuse when the fixed config runs
    bad_labels = tmp_path / "labels.toml"
    bad_labels.write_text('"domæne" = ["mad"]\n', encoding="utf-8")
    annotate = ("--set=annotate.enabled=true", f"--set=annotate.taxonomy={str(bad_labels)!r}")
    bad_taxonomy = cli("dataset", "--config", "tiny", "--run", str(fresh), *annotate)
    assert bad_taxonomy.returncode == 2 and "not a usable taxonomy" in bad_taxonomy.stderr
    error = bad_taxonomy.stderr.strip().splitlines()[-1]
    assert error.startswith("laerebogen: error: ") and str(bad_labels) in error
    assert "Traceback" not in bad_taxonomy.stderr and not fresh.exists()
    wrong = cli("dataset", "--config", "tiny", "--run", str(run), "--executor", "cloud")
    assert wrong.returncode == 2 and "--executor must be slurm, local or debug" in wrong.stderr


def test_stage_preview_prints_each_stages_first_prompt_without_a_model() -> None:
    generation = cli("stage", "preview", "generation", "--config", "tiny", "--count", "1")
    assert generation.returncode == 0, generation.stderr
    assert generation.stdout.startswith("=== ") and "(completion; seed " in generation.stdout
    assert "###\n4. Instruktion:\n--- constraint" in generation.stdout
    for stage in ("grammar", "quality", "evolution", "followups", "annotate"):
        result = cli("stage", "preview", stage, "--config", "local", "--count", "2")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("=== ") == 2 and "(chat; seed " in result.stdout
        assert "--- user\n" in result.stdout
    no_model = cli("stage", "preview", "code_check", "--config", "local")
    assert no_model.returncode == 2 and "code_check asks no model" in no_model.stderr
    unknown = cli("stage", "preview", "translation")
    assert unknown.returncode == 2 and "unknown stage 'translation'" in unknown.stderr


def test_against_takes_every_file_up_to_the_next_option_and_set_one_value() -> None:
    words = ["decontaminate", "r", "--against", "a.jsonl", "b", "--fields", "q", "--set", "x=1"]
    assert _gather_overrides([*words, "--set=y=2", "--against=c"]) == [
        "decontaminate", "r", "--fields", "q", "--against=['a.jsonl', 'b', 'c']",
        "--set=['x=1', 'y=2']",
    ]  # fmt: skip
    assert _gather_overrides(["export", "r", "--set", "x=1", "extra"]) == [
        "export", "r", "extra", "--set=['x=1']",
    ]  # fmt: skip
    for option, shape in (("--against", "FILE..."), ("--set", "key.path=value")):
        with pytest.raises(LaerebogenError, match=f"^{option} needs a value: {option} {shape}$"):
            _gather_overrides(["decontaminate", "r", option, "--report-only"])
