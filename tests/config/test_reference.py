"""The README's configuration reference: generated from the config Structs and never stale."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Annotated, get_args, get_origin

import msgspec
import pytest

from laerebogen.config.reference import reference_markdown, render_tables
from laerebogen.config.schema import Config, Model
from tests.support.paths import REPOSITORY

README = REPOSITORY / "README.md"
START = "<!-- config-reference:start -->\n"
END = "<!-- config-reference:end -->"


def sections(markdown: str) -> dict[str, dict[str, list[str]]]:
    """The reference's tables by heading (`[a.b]`, or "" for the top level), each a mapping of
    key to its cells (type, default, description)."""
    tables: dict[str, dict[str, list[str]]] = {}
    rows: dict[str, list[str]] = {}
    for line in markdown.splitlines():
        if line.startswith("#### "):
            heading = line.removeprefix("#### ")
            rows = tables.setdefault(heading.strip("`[]") if heading.startswith("`") else "", {})
        elif line.startswith("| `"):
            key, *cells = (cell.strip() for cell in line.strip("|").split(" | "))
            rows[key.strip("`")] = cells
    return tables


def is_table(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)


def struct_fields(struct: type[msgspec.Struct], path: str) -> Iterator[tuple[str, str]]:
    """(table path, key) of every field reachable from ``struct``; a table of named tables
    (models, imports) under `<name>`, a list of tables (decontamination files) as its own."""
    for field in msgspec.structs.fields(struct):
        yield path, field.name
        kind = field.type
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        if is_table(kind):
            yield from struct_fields(kind, f"{path}.{field.name}".lstrip("."))
        elif get_origin(kind) is dict and is_table(value := get_args(kind)[1]):
            yield from struct_fields(value, f"{path}.{field.name}.<name>".lstrip("."))
        elif get_origin(kind) is list:
            entries = [t for t in get_args(get_args(kind)[0]) if is_table(t)]
            for entry in entries:  # an array of tables: `[[a.b]]`
                yield from struct_fields(entry, f"{path}.{field.name}".lstrip("."))


def test_the_readme_shows_the_generated_reference() -> None:
    readme = README.read_text(encoding="utf-8")
    assert readme.count(START) == 1 and readme.count(END) == 1
    shown = readme.split(START)[1].split(END)[0]
    assert shown == reference_markdown(), (
        "README.md's configuration reference is stale: run `laerebogen config reference` and "
        "paste its output between the config-reference markers"
    )


def test_every_field_of_every_table_is_in_the_reference() -> None:
    tables = sections(reference_markdown())
    expected = list(struct_fields(Config, ""))
    assert len(expected) > 100
    for table, key in expected:
        assert key in tables.get(table, {}), f"{table}.{key} is not in the reference"
    assert sum(len(rows) for rows in tables.values()) == len(set(expected))


def test_a_field_without_a_description_is_an_error() -> None:
    class Undocumented(msgspec.Struct, kw_only=True):
        documented: Annotated[int, msgspec.Meta(gt=0, description="Has one")] = 1
        bare: Annotated[int, msgspec.Meta(gt=0)] = 2

    with pytest.raises(ValueError, match=r"'x\.bare' has no description"):
        render_tables(Undocumented, "x")


def test_the_shown_defaults_are_the_nested_tables_own() -> None:
    defaults = Config(models={"base": Model(path="b"), "instruct": Model(path="i")})
    tables = sections(reference_markdown())
    assert defaults.grammar.sampling.temperature == 0.2
    assert tables["grammar.sampling"]["temperature"][1] == "`0.2`"
    assert defaults.generation.sampling.temperature == 1.0
    assert tables["generation.sampling"]["temperature"][1] == "`1.0`"
    assert defaults.slurm.cpu_job.gpus == 0 and defaults.slurm.gpu_job.gpus == 1
    assert tables["slurm.cpu_job"]["gpus"][1] == "`0`"
    assert tables["slurm.gpu_job"]["gpus"][1] == "`1`"
    assert tables["generation"]["target"][:2] == ["`int > 0`", "`52000`"]
    assert tables["launch"]["executor"][0] == '`"slurm" \\| "local" \\| "debug"`'
    assert tables["models.<name>"]["path"][1] == "required"


def test_the_cli_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "laerebogen", "config", "reference"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout == reference_markdown()
