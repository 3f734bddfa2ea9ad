"""Session fixtures: the tiny random model and one real vLLM CPU engine running it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from laerebogen.config import Config, load_config
from laerebogen.engine import Engine
from laerebogen.tiny_model import build_tiny_model

pytest_plugins = ("tests.slurm_cluster",)  # the slurm_cluster fixture


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama built once per session (about 5 s)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", progress=lambda _: None)


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: Path) -> Config:
    """The packaged ``tiny`` config pointed at the session's tiny model."""
    return load_config("tiny", [f"model_dir={str(tiny_model_dir.parent)!r}"])


@pytest.fixture(scope="session")
def tiny_engine(tiny_config: Config) -> Iterator[Engine]:
    """The real engine (vLLM CPU) on the tiny model, started once (about 15 s)."""
    with Engine.from_config(tiny_config, "base") as engine:
        yield engine
