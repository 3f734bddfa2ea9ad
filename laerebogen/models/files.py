"""Model directories that laerebogen builds: complete or absent, never half there.

A model is built in a temporary sibling directory and renamed into place with a marker file
written last, so a conversion killed halfway leaves nothing that looks like a model, and a
second build is a no-op.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from laerebogen.errors import LaerebogenError

MARKER = "laerebogen-model.json"


def is_built(directory: Path) -> bool:
    """Whether ``directory`` holds a model that laerebogen finished building."""
    return (directory / MARKER).is_file()


def build_model_dir(
    directory: Path,
    build: Callable[[Path], dict[str, object]],
    progress: Callable[[str], None] = print,
) -> bool:
    """Run ``build`` into a temporary directory and move the result to ``directory``.

    ``build`` fills the directory it is given and returns what the marker records (source,
    versions, checksums). Returns False, without building, when the model is already there.
    A lock next to the directory makes processes sharing a model directory (array tasks on
    shared storage) build it once; the others wait and find it built.
    """
    if _report_built(directory, progress):
        return False
    if directory.exists():
        raise LaerebogenError(
            f"{directory} exists but was not built by laerebogen: remove it or choose another path"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.parent / f".{directory.name}.lock"):
        if _report_built(directory, progress):
            return False
        partial = directory.parent / f".{directory.name}.partial"
        if partial.exists():
            progress(f"{directory.name}: removing {partial} left by an interrupted build")
            shutil.rmtree(partial)
        partial.mkdir()
        try:
            details = build(partial)
            (partial / MARKER).write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
            partial.rename(directory)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return True


def _report_built(directory: Path, progress: Callable[[str], None]) -> bool:
    if not is_built(directory):
        return False
    progress(f"{directory}: already prepared")
    return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, released when the block ends."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_model(directory: Path) -> bool:
    """Whether ``directory`` holds a model vLLM can load: one built here or a user's own."""
    return (directory / "config.json").is_file()
