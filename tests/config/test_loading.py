"""Strict configuration: packaged configs, errors with key paths, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from laerebogen.config.loading import dump_config, load_config, packaged_names, parse_config
from laerebogen.config.schema import Config
from laerebogen.errors import ConfigError


def test_the_three_packaged_configs_load() -> None:
    assert packaged_names() == ["gemma-27b", "local", "tiny"]
    full = load_config("gemma-27b")
    assert full.generation.target == 52_000
    assert full.evolution.generations == 4 and full.followups.turns == 3
    assert (
        full.models["base"].path == "gemma-3-27b-pt"
        and full.models["instruct"].path == "gemma-3-27b-it"
    )
    assert full.launch.executor == "slurm"
    local = load_config("local")
    assert local.launch.executor == "local" and local.models["base"].path == "gemma-3-270m"
    assert local.generation.sampling.min_p == 0.05 and local.generation.sampling.top_p == 1.0
    tiny = load_config("tiny")
    assert tiny.generation.constrained and tiny.grammar.constrained
    assert not any(cfg.models["base"].trust_remote_code for cfg in (full, local, tiny))


@pytest.mark.parametrize("name", ["gemma-27b", "local", "tiny"])
def test_dumped_config_parses_back_to_the_same(name: str) -> None:
    config = load_config(name)
    assert parse_config(dump_config(config), "dump") == config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = '[models.base]\npath = "b"\n[models.instruct]\npath = "i"\n'


def test_a_minimal_user_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, MINIMAL)))
    assert config == Config(models=config.models)
    assert config.generation.sampling.max_tokens == 3072


def test_unknown_key_is_reported_with_its_path_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[generation.sampling]\ntemprature = 0.5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}: unknown key 'generation.sampling.temprature'"


def test_wrong_type_is_reported_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[generation]\ntarget = "many"\n')
    with pytest.raises(ConfigError, match=r"'generation.target': Expected int, got str"):
        load_config(str(path))


def test_out_of_range_value_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[grammar.sampling]\ntop_p = 1.5\n")
    with pytest.raises(ConfigError, match=r"'grammar.sampling.top_p'.*<= 1.0"):
        load_config(str(path))


def test_missing_model_path_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.base]\npath = "b"\n[models.instruct]\ndtype = "auto"\n')
    with pytest.raises(ConfigError, match=r"missing required key 'models.instruct.path'"):
        load_config(str(path))


def test_models_take_any_name_and_stages_name_theirs_or_a_mixture(tmp_path: Path) -> None:
    text = (
        '[models.gemma]\npath = "gemma-3-27b-it"\n[models.other]\npath = "other-it"\n'
        "tensor_parallel_size = 2\n"
        '[generation]\nmodel = "gemma"\n'
        '[grammar]\nmodel = "gemma"\n[quality]\nmodel = "gemma"\n'
        "[evolution]\nmodel = { gemma = 0.5, other = 0.5 }\n"
        "[followups]\nmodel = { gemma = 0.75, other = 0.25 }\n"
        '[annotate]\nmodel = "other"\n'
    )
    config = load_config(str(write(tmp_path, text)))
    assert config.stage_models("generation") == {"gemma": 1.0}
    assert config.stage_models("followups") == {"gemma": 0.75, "other": 0.25}
    assert config.stage_models("code_check") == {}
    assert config.models_in_use() == ["gemma", "other"]
    assert config.model_path("other").name == "other-it"
    assert config.models["other"].tensor_parallel_size == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("followups.model='gemma'", "followups names the model 'gemma', but there is no "
         r"\[models.gemma\] \(models: base, instruct\)"),
        ("evolution.model={ base = 0.5, instruct = 0.6 }",
         "'evolution': the model weights add up to 1.1, not 1"),
        ("evolution.model={ base = 1.0, instruct = 0.0 }",
         "'evolution': every model's weight must be above 0"),
        ("evolution.model={}", "'evolution': a model table needs at least one model"),
        ("annotate.model={ base = 0.5, instruct = 0.5 }",
         "'annotate.model': Expected str, got object"),
        ("models.extra.dtype='auto'", "missing required key 'models.extra.path'"),
        ("models.extra={ path = 'x', dtype = 'int4' }",
         "'models.extra.dtype': Invalid enum value 'int4'"),
    ],
)  # fmt: skip
def test_a_wrong_model_choice_is_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config("tiny", [override])
    assert "\n" not in str(caught.value)


def test_a_disabled_stage_needs_no_model() -> None:
    config = load_config("tiny", ["annotate.enabled=false", "annotate.model='nowhere'"])
    assert "annotate" not in config.model_stages()


def test_invalid_toml_and_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "seed = = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="unknown config 'gemma'"):
        load_config("gemma")


def test_overrides_parse_toml_values_and_fall_back_to_strings() -> None:
    config = load_config(
        "tiny",
        [
            "generation.target=500",
            "models.base.path=/models/my model",
            "generation.sampling.temperature=0.9",
            'container.binds=["/data", "/models"]',
            "launch.executor=slurm",
            "slurm.extra.constraint=a100",
        ],
    )
    assert config.generation.target == 500
    assert config.models["base"].path == "/models/my model"
    assert config.generation.sampling.temperature == 0.9
    assert config.container.binds == ["/data", "/models"]
    assert config.launch.executor == "slurm"
    assert config.slurm.extra == {"constraint": "a100"}


def test_bad_overrides_are_blamed_on_set() -> None:
    with pytest.raises(
        ConfigError, match=r"^--set generation.targt=1: unknown key 'generation.targt'$"
    ):
        load_config("tiny", ["generation.targt=1"])
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        load_config("tiny", ["generation.target"])
    with pytest.raises(ConfigError, match="'seed' is a value, not a table"):
        load_config("tiny", ["seed.x=1"])
    with pytest.raises(ConfigError, match=r"'launch.executor': Invalid enum value 'cloud'"):
        load_config("tiny", ["launch.executor=cloud"])


def test_model_paths_resolve_under_model_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELS", str(tmp_path))
    config = load_config("tiny", ["model_dir=$MODELS", "models.instruct.path=/abs/it"])
    assert config.model_path("base") == tmp_path / "tiny"
    assert config.model_path("instruct") == Path("/abs/it")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sources.shares={magpie = 0.5}", "the shares add up to 0.5, not 1"),
        ("sources.shares={wiki = 1.0}", "unknown source 'wiki': choose from self_instruct"),
        ("sources.shares={self_instruct = 1.0, magpie = 0.0}", "every share must be above 0"),
        (
            'sources.grounded.kinds=["hvem", "hvilken"]',
            "kinds must be some of hvem, .*, not hvilken",
        ),
        ("sources.grounded.kinds=[]", "kinds must be some of hvem"),
        ("sources.grounded.min_passage_chars=2000", "min_passage_chars is above max_passage_chars"),
    ],
)
def test_sources_are_checked_when_the_config_loads(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_the_grounded_source_needs_a_corpus() -> None:
    with pytest.raises(ConfigError, match=r"the grounded source needs sources\.grounded\.corpus"):
        load_config("gemma-27b", ["sources.shares={self_instruct = 0.8, grounded = 0.2}"])
    shipped = load_config("tiny", ["sources.shares={grounded = 1.0}"]).sources.grounded
    assert shipped.corpus_path().name == "corpus_da" and shipped.corpus_path().is_dir()


def test_benchmark_files_are_paths_or_tables() -> None:
    table = "{ path = 'packaged:benchmark_sample.jsonl', fields = ['spørgsmål'], name = 'Prøve' }"
    config = load_config("tiny", [f"decontamination.files=['~/a.jsonl', {table}]"])
    plain, table = config.decontamination.benchmarks()
    assert plain.file_path() == Path.home() / "a.jsonl" and plain.fields == []
    assert table.file_path().is_file() and (table.name, table.fields) == ("Prøve", ["spørgsmål"])
    assert load_config("gemma-27b").decontamination.files == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decontamination.ngram=1", "'decontamination.ngram': Expected int >= 2"),
        (
            "decontamination.files=[{ fields = ['q'] }]",
            r"missing required key 'decontamination\.files\[0\]\.path'",
        ),
        (
            "decontamination.files=[{ path = 'a', field = 'q' }]",
            r"unknown key 'decontamination\.files\[0\]\.field'",
        ),
        ("decontamination.short_share=0", "'decontamination.short_share': Expected float > 0"),
    ],
)
def test_a_wrong_decontamination_setting_is_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_config("tiny", [override])
    assert "\n" not in str(error.value)
