"""Session fixtures: the tiny random model and one real vLLM CPU engine running it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.inference.engine import Engine
from laerebogen.models.tiny import build_tiny_model
from tests.prepared_models import PreparedModels

pytest_plugins = ("tests.slurm_cluster",)  # the slurm_cluster fixture

# What marks a test as one that `make test-fast` leaves out (pytest -m "not slow"): the
# fixtures that build or load a model or need the SLURM cluster, and the modules whose tests
# start vLLM or SLURM in subprocesses (or prepare Gemma) without such a fixture.
SLOW_FIXTURES = {"tiny_model_dir", "prepared_models", "slurm_cluster"}
SLOW_MODULES = {"test_benchmarks", "test_local_recipe", "test_model_prepare", "test_readme"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start vLLM, prepare a model or need SLURM as ``slow``."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama built once per session (about 5 s)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", progress=lambda _: None)


@pytest.fixture(scope="session")
def prepared_models(tmp_path_factory: pytest.TempPathFactory) -> PreparedModels:
    """The local models (Gemma 3 270M, SmolLM2), each prepared at most once per session."""
    return PreparedModels(tmp_path_factory.mktemp("prepared-models"))


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: Path) -> Config:
    """The packaged ``tiny`` config pointed at the session's tiny model."""
    return load_config("tiny", [f"model_dir={str(tiny_model_dir.parent)!r}"])


@pytest.fixture(scope="session")
def tiny_engine(tiny_config: Config) -> Iterator[Engine]:
    """The real engine (vLLM CPU) on the tiny model, started once (about 15 s)."""
    with Engine.from_config(tiny_config, "base") as engine:
        yield engine


# The whole recipe, small: 5 one-prompt shards in the first generation round (more than the
# test cluster's MaxArraySize of 4, so SLURM splits the array), two grammar shards (an array),
# one evolution generation, and every other step in one shard.
RECIPE = (
    "generation.first_round_prompts=5",
    "generation.prompts_per_shard=1",
    "generation.target=3",
    "generation.max_rounds=2",
    "grammar.records_per_shard=2",
    "quality.records_per_shard=16",
    "evolution.generations=1",
    "evolution.records_per_shard=16",
    "followups.records_per_shard=16",
)


@pytest.fixture(scope="session")
def recipe_overrides(tiny_model_dir: Path) -> list[str]:
    """``--set`` overrides of the small recipe on the session's tiny model."""
    return [f"model_dir={str(tiny_model_dir.parent)!r}", *RECIPE]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, recipe_overrides: list[str]) -> Path:
    """The small recipe run once with the debug executor: what other executors must match."""
    from laerebogen.commands.dataset import run_dataset

    run = tmp_path_factory.mktemp("reference") / "run"
    run_dataset(load_config("tiny", recipe_overrides), run, "debug", out=io.StringIO())
    return run
