"""The command line is checked against the commands' signatures before anything runs."""

from __future__ import annotations

import pytest

from laerebogen.cli import Cli
from laerebogen.command_line import check_command_line
from laerebogen.errors import UsageError


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["datset"], "unknown command 'datset': did you mean dataset?"),
        (["config", "shwo"], "unknown command 'config shwo': did you mean config show?"),
        (
            ["dataset", "--executer", "slurm"],
            "dataset: unknown flag --executer: did you mean --executor?",
        ),
        (["status", "r", "--jsn"], "status: unknown flag --jsn: did you mean --json?"),
        (
            ["dataset", "--exector=slurm"],
            "dataset: unknown flag --exector: did you mean --executor?",
        ),
        (["dataset", "-s", "x"], "dataset: unknown flag -s: use --set or --smoke"),
        (["version", "--set=a=1"], "version: unknown flag --set"),
        (["inspect", "a", "3", "extra"], "inspect: unexpected argument 'extra'"),
        (["inspect"], "inspect: missing PATH"),
        (["inspect", "a", "b"], "inspect: --limit takes a number, got 'b'"),
        (
            ["shard", "--run", "r", "--step", "s", "--index=x"],
            "shard: --index takes a number, got 'x'",
        ),
        (["dataset", "--", "--trace"], "dataset: fire's own flags after '--' are not supported"),
        (["verify", "--run"], "verify: --run needs a value"),
        (["status", "--run", "--json"], "status: --run needs a value"),
    ],
)
def test_a_wrong_word_is_one_line_naming_the_closest_valid_one(
    words: list[str], message: str
) -> None:
    with pytest.raises(UsageError) as error:
        check_command_line(Cli(), words)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--help"],
        ["config"],
        ["config", "show", "tiny", "--set=['seed=3']"],
        ["dataset", "-c", "tiny", "--run=r", "--executor", "debug", "--smoke"],
        ["dataset", "--smoke", "4", "--nosmoke"],
        ["export", "r", "--with-metadata", "--parquet"],
        ["export", "r", "--with_metadata=True"],
        ["inspect", "p", "--limit", "-1"],
        ["status", "r", "--json"],
        ["verify", "--run", "r"],
        ["shard", "--run", "r", "--step", "s", "--index", "2"],
        ["model", "prepare", "gemma-3-270m", "--model-dir", "/m"],
        ["dataset", "--executer", "--help"],
    ],
)
def test_what_fire_accepts_passes(words: list[str]) -> None:
    check_command_line(Cli(), words)
