"""The README's shell commands, run as written, as a new user would after the quick start.

Every command of a fenced ```sh block of README.md is either run here (an entry of ``RUN``: the
exit status and what it must print or write) or an entry of ``NOT_RUN`` with the reason it cannot
run in a test. A new README command that is neither fails ``test_every_command_is_run_or_listed``;
an entry that matches no command any more fails ``test_no_stale_entries``.

The commands run in README order, each with its shell (``sh -c``), in one sandbox that looks like
a fresh clone after ``make install`` and ``make dataset``: the repository's files (``.venv``,
``laerebogen``, ``seeds``, ``Makefile`` ...) linked into a temporary directory, ``runs/local`` a
copy of the session's finished small run (``reference_run``), and a private ``HOME`` holding what
``make dataset`` prepares on first use (the local model, under ``~/.cache/laerebogen/models``), so
nothing is written into the repository's ``runs/`` or the real home directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.models import PreparedModels, missing_sources
from tests.support.paths import REPOSITORY

pytestmark = pytest.mark.timeout(900)

README = REPOSITORY / "README.md"
# What a clone holds and the README's commands use; runs/ is the sandbox's own.
LINKED = (
    ".venv",
    "laerebogen",
    "seeds",
    "benchmarks",
    "slurm",
    "containers",
    "requirements",
    "Makefile",
    "pyproject.toml",
    "README.md",
    "LICENSE",
)
# Variables that would send caches somewhere else than the sandbox's HOME.
CACHE_VARIABLES = (
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "VLLM_CACHE_ROOT",
    "MPLCONFIGDIR",
)
LOCAL_MODEL = "gemma-3-270m"


class Expect(NamedTuple):
    """What a command run from the sandbox must do."""

    status: int = 0
    output: tuple[str, ...] = ()  # substrings of stdout + stderr
    files: tuple[str, ...] = ()  # written by it: relative to the sandbox, or ~/... in its HOME
    local_model: bool = False  # needs the local model that `make dataset` prepares
    timeout: float = 120.0


# Regular expressions (matched at the start of a command) of the commands this test runs.
RUN: dict[str, Expect] = {
    r"\.venv/bin/laerebogen --help$": Expect(output=("COMMANDS", "dedup", "export", "generate")),
    r"\.venv/bin/laerebogen config list$": Expect(output=("gemma-27b", "local", "tiny")),
    r"\.venv/bin/laerebogen config show gemma-27b ": Expect(output=("seed = 7", "target = 1000")),
    r"\.venv/bin/laerebogen inspect runs/local/": Expect(output=('"origin":"seed"',)),
    r"\.venv/bin/laerebogen doctor$": Expect(output=("vllm", "submitit")),
    # Fails by design: there are no Gemma 3 27B models here, and doctor must say so (status 1).
    r"\.venv/bin/laerebogen doctor --config gemma-27b ": Expect(
        status=1, output=("gemma-3-27b-pt not found", "gemma-3-27b-it not found")
    ),
    r"\.venv/bin/laerebogen status --run runs/local$": Expect(
        output=("followups", "exported: yes")
    ),
    r"\.venv/bin/laerebogen verify --run runs/local$": Expect(
        output=("shards verified, every file as its manifest says",)
    ),
    r"\.venv/bin/laerebogen export --run runs/local --out release/": Expect(
        files=(
            "release/lb.jsonl",
            "release/lb.filtered.jsonl",
            "release/lb.parquet",
            "release/README.md",
            "release/stats.json",
        )
    ),
    r"\.venv/bin/laerebogen report --run runs/local$": Expect(
        output=("stats: runs/local/stats.json",), files=("runs/local/plots/funnel.png",)
    ),
    r"\.venv/bin/laerebogen browse --run runs/local$": Expect(
        output=("-> runs/local/browse/index.html",),
        files=("runs/local/browse/index.html", "runs/local/browse/data/meta.js"),
    ),
    r"\.venv/bin/laerebogen check-code runs/local/dataset\.jsonl ": Expect(
        output=("code blocks:", "(sandbox: "), files=("checked.jsonl", "failing.jsonl")
    ),
    r"\.venv/bin/laerebogen decontaminate --run runs/local --against laerebogen/data/": Expect(
        output=("decontamination (10-grams of the user's messages)", "benchmark_sample.jsonl: 10"),
        files=("runs/local/decontamination.json",),
    ),
    r"\.venv/bin/laerebogen config reference$": Expect(output=("#### `[models.<name>]`",)),
    r"\.venv/bin/laerebogen seeds check( |$)": Expect(
        output=("176 tasks", "near-duplicate instructions (ROUGE-L > 0.7): none")
    ),
    r"\.venv/bin/laerebogen dedup seeds/": Expect(output=("read 176",), files=("unique.jsonl",)),
    r"\.venv/bin/laerebogen dedup runs/local/": Expect(
        output=("the 176 records of unique.jsonl",), files=("new.jsonl",)
    ),
    r"\.venv/bin/laerebogen filter ": Expect(files=("clean.jsonl", "rejects.jsonl")),
    r"echo '\{.*\}' > requests\.jsonl$": Expect(files=("requests.jsonl",)),
    r"\.venv/bin/laerebogen generate requests\.jsonl ": Expect(
        output=(f"1 requests to {LOCAL_MODEL}",),
        files=("results.jsonl",),
        local_model=True,
        timeout=600,  # vLLM's start-up: 40 s on an idle 2-core machine, minutes on a busy one
    ),
    # make dataset prepared it already (as here): the command finds it and returns at once.
    rf"\.venv/bin/laerebogen model prepare {LOCAL_MODEL}$": Expect(
        output=("already prepared",), local_model=True
    ),
    r"\.venv/bin/laerebogen model tiny ~/": Expect(
        files=("~/.cache/laerebogen/models/tiny/config.json",)
    ),
    r"\.venv/bin/laerebogen stage preview generation ": Expect(output=("(completion;",)),
    r"\.venv/bin/laerebogen stage preview evolution ": Expect(output=("(chat;",)),
    r"\.venv/bin/laerebogen stage preview annotate ": Expect(output=('"domæne"', "--- constraint")),
    r"\.venv/bin/laerebogen stage preview magpie ": Expect(
        output=("(user_turn;", "--- user (the model writes it, starting with:)")
    ),
    r"\.venv/bin/laerebogen stage preview grounded ": Expect(output=("(chat;", "Tekst:")),
    r"\.venv/bin/laerebogen import laerebogen/data/import_sample\.jsonl ": Expect(
        output=("8 rows as import:eksempel: kept",)
    ),
}

# Regular expressions (matched at the start of a command) of the commands this test cannot run.
NOT_RUN: dict[str, str] = {
    r"make install$": "installs the environment the tests run in",
    r"make dataset$|\.venv/bin/laerebogen dataset --config local ": (
        "the whole local recipe on Gemma 3 270M, up to 20 minutes on 2 cores; runs/local here is "
        "the same driver's small recipe on the tiny model (the reference_run fixture)"
    ),
    r"make test$": "is the test suite itself",
    r"make test-fast$": "is most of the test suite itself",
    r"make format$": "rewrites the repository's source files (ruff format and fixes)",
    r"make bench$": "every benchmark at full size (15 min); test_benchmarks runs each small",
    r"make container ": "needs Apptainer (and writes the image into /project)",
    r"sbatch ": "needs a SLURM cluster with GPUs",
    r"\.venv/bin/laerebogen dataset --config gemma-27b ": (
        "the full recipe: a SLURM cluster with GPUs and the Gemma 3 27B models"
    ),
    r"\.venv/bin/laerebogen dataset --config my-recipe\.toml .* --smoke$": (
        "a smoke run of a user's cluster recipe: SLURM with GPUs and its models; test_smoke runs "
        "the same command on the tiny config"
    ),
}


class Command(NamedTuple):
    line: int  # in README.md
    text: str


def strip_comment(line: str) -> str:
    """The line without a shell comment: a ``#`` that starts a word outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def readme_commands(text: str) -> list[Command]:
    """The commands of every ```sh block: one per line (``\\`` continues a line), no comments."""
    commands: list[Command] = []
    in_block = False
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not in_block:
            in_block = raw.strip() == "```sh"
            continue
        if raw.strip().startswith("```"):
            assert not pending, f"README.md:{start}: a continued line ends its block"
            in_block = False
            continue
        if not pending:
            start = number
        line = pending + raw.rstrip()
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        command = " ".join(strip_comment(line).split())
        if command:
            commands.append(Command(start, command))
    return commands


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def matching(table: dict[str, object], command: str) -> list[str]:
    return [pattern for pattern in table if re.match(pattern, command)]


def expectation(command: str) -> Expect | None:
    """What the command must do when run, or None when it is not run."""
    patterns = matching(RUN, command)
    return RUN[patterns[0]] if len(patterns) == 1 and not matching(NOT_RUN, command) else None


def local_model_available() -> bool:
    return not missing_sources(LOCAL_MODEL)


class Sandbox:
    """A temporary directory the README's commands take for the repository's root."""

    def __init__(self, root: Path, home: Path, models: PreparedModels) -> None:
        self.root = root
        self.home = home
        self.models = models
        self.env = {key: value for key, value in os.environ.items() if key not in CACHE_VARIABLES}
        self.env["HOME"] = str(home)
        self.ran: set[int] = set()
        self.local_model = False

    def path(self, name: str) -> Path:
        return self.home / name[2:] if name.startswith("~/") else self.root / name

    def prepare_local_model(self) -> None:
        """What `make dataset` does on first use: the local model into ~/.cache, here linked
        from the session's prepared models, which skip the test without the cpu extra
        (test_model_prepare tests the preparation)."""
        if self.local_model:
            return
        self.models.link(LOCAL_MODEL, self.home / ".cache" / "laerebogen" / "models")
        self.local_model = True

    def run(self, index: int) -> tuple[int, str, str]:
        """Run command ``index`` with the shell; its exit status, stdout and stderr."""
        command = COMMANDS[index].text
        expect = expectation(command)
        assert expect is not None, command
        if expect.local_model:
            self.prepare_local_model()
        self.ran.add(index)
        # A session of its own, so that a timeout kills vLLM's worker processes too.
        process = subprocess.Popen(
            command,
            shell=True,
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=expect.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += f"\n(killed after {expect.timeout:g} s)"
            return -1, stdout, stderr
        return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, reference_run: Path, prepared_models: PreparedModels
) -> Sandbox:
    base = tmp_path_factory.mktemp("readme")
    root = base / "clone"
    root.mkdir()
    for name in LINKED:
        if (REPOSITORY / name).exists():
            (root / name).symlink_to(REPOSITORY / name)
    # A copy: report and export write into the run, which other tests read.
    shutil.copytree(reference_run, root / "runs" / "local", symlinks=True)
    home = base / "home"
    home.mkdir()
    return Sandbox(root, home, prepared_models)


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 20, COMMANDS


def test_every_command_is_run_or_listed() -> None:
    problems = []
    for command in COMMANDS:
        found = matching(RUN, command.text) + matching(NOT_RUN, command.text)
        if len(found) != 1:
            what = "in none of RUN and NOT_RUN" if not found else f"matched by {found}"
            problems.append(f"README.md:{command.line}: {command.text!r} is {what}")
    assert problems == []


def test_no_stale_entries() -> None:
    stale = [
        pattern
        for pattern in (*RUN, *NOT_RUN)
        if not any(re.match(pattern, command.text) for command in COMMANDS)
    ]
    assert stale == [], "entries that match no README command"


def test_parsing() -> None:
    text = "\n".join(
        [
            "```sh",
            "a --x 1   # a comment",
            "# only a comment",
            "",
            "echo '# not a comment' \\",
            "  --more",
            "```",
            "```",
            "not a command",
            "```",
        ]
    )
    assert readme_commands(text) == [
        Command(2, "a --x 1"),
        Command(5, "echo '# not a comment' --more"),
    ]


def _id(command: Command) -> str:
    return f"{command.line}: {command.text.removeprefix('.venv/bin/')[:60]}"


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[_id(c) for c in COMMANDS])
def test_readme_command(request: pytest.FixtureRequest, index: int) -> None:
    command = COMMANDS[index]
    reasons = [NOT_RUN[pattern] for pattern in matching(NOT_RUN, command.text)]
    expect = expectation(command.text)
    if expect is None:
        if len(reasons) == 1 and not matching(RUN, command.text):
            pytest.skip(f"not run: {reasons[0]}")
        pytest.fail(f"README.md:{command.line}: not classified: {command.text!r}")
    sandbox: Sandbox = request.getfixturevalue("sandbox")  # not for the commands not run
    # Selected on its own (-k): the commands before it first, as a reader runs them.
    for earlier in range(index):
        before = expectation(COMMANDS[earlier].text)
        if earlier in sandbox.ran or before is None:
            continue
        if not before.local_model or local_model_available():
            sandbox.run(earlier)
    status, stdout, stderr = sandbox.run(index)
    report = (
        f"README.md:{command.line}: {command.text}\nexit status {status}\n"
        f"--- stdout (end)\n{stdout[-1500:]}\n--- stderr (end)\n{stderr[-3000:]}"
    )
    assert status == expect.status, report
    output = stdout + stderr
    missing = [text for text in expect.output if text not in output]
    assert missing == [], report
    absent = [name for name in expect.files if not sandbox.path(name).is_file()]
    assert absent == [], report
