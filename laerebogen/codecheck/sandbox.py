"""Runs the code blocks of one message in a fresh, isolated, limited process.

One process per message (its blocks in order, sharing definitions and one SQLite database):
``unshare`` gives it its own network (no devices, so nothing is reachable, not even
127.0.0.1), process and mount namespaces when the machine allows it; the harness
(:mod:`laerebogen.codecheck.harness`) then hides the home directories, temporary directories
and the run directory, drops root, sets its limits and refuses network, new processes and
writes outside its working directory. The wall-clock timeout is kept here: the process group
is killed, and with it the namespace and all it started.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec

from laerebogen.config.schema import CodeCheck
from laerebogen.errors import LaerebogenError
from laerebogen.records import CODE_OUTCOMES as OUTCOMES
from laerebogen.records import CodeOutcome

Isolation = Literal["namespaces", "user-namespace", "none"]
HARNESS = Path(__file__).with_name("harness.py")
# Hidden in every sandbox besides what the caller names: where users and programs keep files.
HIDDEN_ALWAYS = ("/root", "/home", "/tmp", "/var/tmp", "/dev/shm", "/run", "/mnt", "/media")
NAMESPACES = ["--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc"]
RESULT_LOST = 3  # the harness's exit status when the code closed its result pipe
STARTUP_SECONDS = 30.0  # for the process to isolate itself; slow only on an overloaded node
TMPFS_MB = 64
EXPLANATION = {
    "namespaces": "network, process and mount namespaces; the code runs as nobody",
    "user-namespace": "user, network, process and mount namespaces; no capabilities",
    "none": "no namespaces on this machine: sockets, processes and writes outside the "
    "working directory are refused from inside the process",
}


class SandboxError(LaerebogenError):
    """The sandbox itself could not be set up (not something the checked code did)."""


class Block(msgspec.Struct, frozen=True):
    """A block to run: ``python`` or ``sql`` source."""

    language: str
    code: str


class Ran(msgspec.Struct, frozen=True):
    """How one block's run ended."""

    outcome: CodeOutcome
    detail: str = ""


def _unshare_works(options: Sequence[str]) -> bool:
    try:
        probe = subprocess.run(
            ["unshare", *options, "true"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@functools.cache
def supports(isolation: Isolation) -> bool:
    """Whether this machine can start a sandbox with ``isolation`` (probed once)."""
    if isolation == "namespaces":
        return os.geteuid() == 0 and _unshare_works(NAMESPACES)
    if isolation == "user-namespace":
        return _unshare_works(["--user", "--map-root-user", *NAMESPACES])
    return True


def available_isolation() -> Isolation:
    """The strongest isolation this machine allows."""
    return next(mode for mode in ("namespaces", "user-namespace", "none") if supports(mode))


def interpreter_dirs() -> list[str]:
    """What the sandboxed interpreter must still see: its prefixes and site-packages."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    dirs.update(site.getsitepackages())
    return sorted({os.path.realpath(path) for path in dirs})


class Sandbox:
    """Runs messages' blocks with the limits of a ``[code_check]`` section.

    ``hide`` names directories the code must not see besides the usual ones (the run
    directory); ``isolation`` is the machine's strongest unless a test asks for another.
    """

    def __init__(
        self,
        settings: CodeCheck,
        hide: Sequence[Path] = (),
        isolation: Isolation | None = None,
    ) -> None:
        self.settings = settings
        self.isolation = available_isolation() if isolation is None else isolation
        wanted = [*HIDDEN_ALWAYS, str(Path.home()), os.getcwd(), *map(str, hide)]
        # Never the root itself (a home or working directory of "/"): it holds the system.
        self.hide = [path for path in dict.fromkeys(wanted) if os.path.realpath(path) != "/"]
        self.limits = {
            "cpu_seconds": settings.cpu_seconds,
            "memory_mb": settings.memory_mb,
            "file_size_mb": settings.file_size_mb,
            "open_files": settings.open_files,
            "processes": settings.processes,
        }

    def command(self, job_fd: int, result_fd: int) -> list[str]:
        python = [sys.executable, "-I", str(HARNESS), str(job_fd), str(result_fd)]
        if self.isolation == "namespaces":
            return ["unshare", *NAMESPACES, *python]
        if self.isolation == "user-namespace":
            return ["unshare", "--user", "--map-root-user", *NAMESPACES, *python]
        return python

    def run(self, blocks: Sequence[Block]) -> list[Ran]:
        """Run ``blocks`` in order in one new process; one result per block."""
        if not blocks:
            return []
        with tempfile.TemporaryDirectory(prefix="laerebogen-code-") as work:
            return self._run(blocks, work)

    def _run(self, blocks: Sequence[Block], work: str) -> list[Ran]:
        job = {
            "blocks": [msgspec.to_builtins(block) for block in blocks],
            "limits": self.limits,
            "isolation": self.isolation,
            "hide": self.hide,
            "keep": interpreter_dirs(),
            "work": work,
            "tmpfs_mb": TMPFS_MB,
        }
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            process = subprocess.Popen(
                self.command(job_read, result_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd=work,
                pass_fds=(job_read, result_write),
                start_new_session=True,
            )
        finally:
            os.close(job_read)
            os.close(result_write)
        try:
            with os.fdopen(job_write, "wb") as job_pipe:
                job_pipe.write(json.dumps(job).encode())
        except BrokenPipeError:
            pass  # it died before reading: reported below from its exit and stderr
        try:
            return self._collect(process, result_read, len(blocks))
        finally:
            _kill(process)
            os.close(result_read)
            if process.stderr:
                process.stderr.close()

    def _collect(self, process: subprocess.Popen[bytes], results: int, count: int) -> list[Ran]:
        """Read results as blocks finish; a block past its time ends the process."""
        done: list[Ran] = []
        ready = ended = False  # ended: the process said it ends after its last result
        pending = b""
        deadline = time.monotonic() + STARTUP_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(results, selectors.EVENT_READ)
            while len(done) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    if not ready:
                        raise SandboxError("the code sandbox did not start within "
                                           f"{STARTUP_SECONDS:.0f} s")  # fmt: skip
                    done.append(Ran("timeout", f"over {self.settings.timeout_seconds:g} s"))
                    break
                chunk = os.read(results, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    event = _event(line)
                    if event.get("ready"):
                        ready = True
                    elif event.get("block") == len(done) and event.get("outcome") in OUTCOMES:
                        done.append(Ran(event["outcome"], str(event.get("detail", ""))[:200]))
                        ended = ended or event.get("last") is True
                    deadline = time.monotonic() + self.settings.timeout_seconds
        if not ready:
            _kill(process)
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            last = error.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
            raise SandboxError(f"the code sandbox failed to start ({self.isolation}): {last[0]}")
        if len(done) < count and not ended and not (done and done[-1].outcome == "timeout"):
            done.append(_ended(process))
        return done + [Ran("not_verifiable", "not run: an earlier block ended the process")] * (
            count - len(done)
        )


def _event(line: bytes) -> dict:
    """One line of the result pipe; anything else (the checked code can write to the pipe
    too) is no event, and never stops the step."""
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _ended(process: subprocess.Popen[bytes]) -> Ran:
    """The outcome of the block running when the process ended without reporting it: the
    kernel killed it (the CPU limit's SIGKILL, or out of memory; exits the code asks for are
    reported). Inside a PID namespace the signal is not seen, only that it ended."""
    try:
        status = process.wait(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(process)
        status = process.wait()
    if status == RESULT_LOST:
        return Ran("not_verifiable", "no result reported")
    if status < 0:
        with contextlib.suppress(ValueError):
            return Ran("resource_limit", f"killed by {signal.Signals(-status).name}")
    return Ran("resource_limit", "killed")


def _kill(process: subprocess.Popen[bytes]) -> None:
    """End the process and everything in its group (the namespace dies with its init)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
