"""Session fixtures: the tiny random model and one real vLLM CPU engine running it."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.inference.engine import ENGINE_FACTORY, Engine
from laerebogen.models.tiny import build_tiny_model
from tests.support.canned_engine import FACTORY as CANNED_ENGINE
from tests.support.models import PreparedModels
from tests.support.paths import REPOSITORY
from tests.support.runs import RECIPE

pytest_plugins = ("tests.support.slurm_cluster",)  # the slurm_cluster fixture

# Markers (declared in pyproject.toml): `engine` for a test that builds or prepares a model or
# starts vLLM, `slurm` for one that needs the SLURM cluster; either makes it `slow`, which
# `make test-fast` (pytest -m "not slow") leaves out. They follow from the fixtures a test uses,
# or from its module where its subprocesses start vLLM without such a fixture.
ENGINE_FIXTURES = {"tiny_model_dir", "tiny_qwen2_dir", "prepared_models"}
ENGINE_MODULES = {"test_local_recipe", "test_prepare", "test_readme"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests ``engine`` or ``slurm`` by what they use, and both kinds ``slow``."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if "slurm_cluster" in fixtures:
            item.add_marker(pytest.mark.slurm)
        if module in ENGINE_MODULES or ENGINE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.engine)
        if item.get_closest_marker("slurm") or item.get_closest_marker("engine"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def canned_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines of this test and of its subprocesses (local workers, SLURM tasks) answer
    without a model, from tests/support/canned_engine.py."""
    monkeypatch.setenv(ENGINE_FACTORY, CANNED_ENGINE)
    paths = [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama built once per session (about 5 s)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", progress=lambda _: None)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tiny_model_dir: Path) -> Path:
    """A tiny random Qwen2 beside the tiny Llama (the second model of a mixture), built once
    per session (about 5 s)."""
    directory = tiny_model_dir.parent / "tiny-qwen2"
    return build_tiny_model(directory, seed=1, progress=lambda _: None, architecture="qwen2")


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
