"""The labels the annotate step chooses from: domains, task types, levels and hazards.

They live in one TOML file (the packaged ``prompts/annotate_taxonomy.toml`` or the file of
``[annotate] taxonomy``) so that a user can replace them without touching code. Labels become
alternatives of the reply's regular expression and JSON strings, so a label with a quotation
mark, a backslash or a line break is refused when the file is read, with a one-line error.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from laerebogen.errors import ConfigError
from laerebogen.records import HARMLESS

LEVELS = ("1", "2", "3", "4", "5")
_FORBIDDEN = set('"\\') | {chr(code) for code in range(32)}

Labels = Annotated[list[str], msgspec.Meta(min_length=1)]


class Taxonomy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The labels of each key of the reply; ``difficulty`` and ``quality`` define levels 1-5."""

    domains: Labels = msgspec.field(name="domæne")
    task_types: Labels = msgspec.field(name="opgavetype")
    harms: Labels = msgspec.field(name="skadeligt")
    difficulty: dict[str, str] = msgspec.field(name="sværhedsgrad")
    quality: dict[str, str] = msgspec.field(name="kvalitet")

    @property
    def verdicts(self) -> list[str]:
        """Every answer ``skadeligt`` may have: harmless first, then each hazard."""
        return [HARMLESS, *self.harms]


def packaged_taxonomy_path() -> Path:
    """The taxonomy that ships with the package."""
    return Path(str(resources.files("laerebogen") / "prompts" / "annotate_taxonomy.toml"))


def _problem(taxonomy: Taxonomy) -> str | None:
    """What makes a decoded taxonomy unusable, or None."""
    for key, labels in (
        ("domæne", taxonomy.domains),
        ("opgavetype", taxonomy.task_types),
        ("skadeligt", taxonomy.harms),
    ):
        folded = [label.strip().casefold() for label in labels]
        if len(set(folded)) != len(folded):
            return f"{key} names a label twice"
        for label in labels:
            if not label.strip() or label != label.strip() or _FORBIDDEN & set(label):
                return (
                    f"{key} label {label!r}: labels need text without leading or trailing "
                    "spaces, quotation marks, backslashes or line breaks"
                )
    if HARMLESS in (label.casefold() for label in taxonomy.harms):
        return f"skadeligt lists {HARMLESS!r}, the answer for a harmless conversation"
    for key, levels in (("sværhedsgrad", taxonomy.difficulty), ("kvalitet", taxonomy.quality)):
        if tuple(sorted(levels)) != LEVELS:
            return f"[{key}] must define exactly the levels 1 to 5, has {sorted(levels)}"
    return None


def load_taxonomy(path: Path | None) -> Taxonomy:
    """The taxonomy in ``path`` (None: the packaged one), checked; a :class:`ConfigError`
    names the file and what is wrong."""
    path = packaged_taxonomy_path() if path is None else path
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        taxonomy = msgspec.convert(data, Taxonomy)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such taxonomy file ([annotate] taxonomy)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.ValidationError) as error:
        raise ConfigError(f"{path}: not a usable taxonomy: {error}") from None
    if problem := _problem(taxonomy):
        raise ConfigError(f"{path}: {problem}")
    return taxonomy
