"""A small, strict parser of Apptainer definition files, for tests that cannot run apptainer.

Apptainer cannot be installed on the development machines, and ``spython`` accepts almost any
text (a missing ``Bootstrap``, typos such as ``%pots``), so the image definition is checked here.
Stricter than Apptainer on purpose: one stage only, no SCIF ``%app*`` sections, and a section
may appear once (Apptainer appends repeats, which hides a second ``%post`` far down the file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SECTIONS = frozenset(
    {
        "setup",
        "files",
        "environment",
        "post",
        "runscript",
        "startscript",
        "test",
        "labels",
        "help",
        "arguments",
    }
)
# Header keywords of Apptainer's bootstrap agents: one of these at the start of a line after the
# first section is a second stage or a misplaced header line, never part of a section's text.
HEADER_KEYS = frozenset(
    {
        "bootstrap",
        "from",
        "stage",
        "fingerprints",
        "registry",
        "namespace",
        "include",
        "includecmd",
        "osversion",
        "mirrorurl",
        "updateurl",
        "product",
        "confirm",
        "setopt",
    }
)
REQUIRED_HEADER = ("Bootstrap", "From")
_HEADER_LINE = re.compile(r"([A-Za-z][A-Za-z0-9]*):(.*)")
_SECTION_LINE = re.compile(r"%([A-Za-z][A-Za-z0-9_]*)(?:[ \t]+(.*))?")
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Definition:
    """A parsed definition: header keywords and section bodies (the text below ``%name``)."""

    header: dict[str, str]
    sections: dict[str, str]
    # What follows the name on a section's line (``%files from build``, ``%post -c /bin/bash``).
    section_args: dict[str, str] = field(default_factory=dict)
    # The line number of each section's ``%name`` line, so helpers can name lines in errors.
    section_lines: dict[str, int] = field(default_factory=dict)
    source: str = "<definition>"

    def _entries(self, name: str) -> list[tuple[int, str]]:
        """(line number, stripped text) of a section's non-blank, non-comment lines."""
        first = self.section_lines.get(name, 0) + 1
        lines = self.sections.get(name, "").split("\n")
        return [
            (first + offset, line.strip())
            for offset, line in enumerate(lines)
            if line.strip() and not line.strip().startswith("#")
        ]

    def _error(self, line: int, message: str) -> ValueError:
        return ValueError(f"{self.source}: line {line}: {message}")

    def files(self) -> list[tuple[str, str]]:
        """``%files`` as (source, destination); a line without a destination copies to the
        same path, as Apptainer does. Paths with spaces are not supported."""
        pairs = []
        for line, text in self._entries("files"):
            parts = text.split()
            if len(parts) > 2:
                raise self._error(line, f"%files: expected 'source [destination]', got {text!r}")
            pairs.append((parts[0], parts[-1]))
        return pairs

    def labels(self) -> dict[str, str]:
        """``%labels`` as name -> value (the value is everything after the first blank)."""
        labels: dict[str, str] = {}
        for line, text in self._entries("labels"):
            name, *rest = text.split(maxsplit=1)
            value = rest[0] if rest else ""
            if not value.strip():
                raise self._error(line, f"%labels: label {name!r} has no value")
            if name in labels:
                raise self._error(line, f"%labels: duplicate label {name!r}")
            labels[name] = value.strip()
        return labels

    def arguments(self) -> dict[str, str]:
        """``%arguments`` as name -> default value (``NAME=value`` lines)."""
        arguments: dict[str, str] = {}
        for line, text in self._entries("arguments"):
            name, equals, value = text.partition("=")
            if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise self._error(line, f"%arguments: expected NAME=value, got {text!r}")
            arguments[name] = value
        return arguments

    def template_variables(self) -> set[str]:
        """Names used as ``{{ NAME }}`` anywhere; Apptainer fails a build when one has no value."""
        texts = [*self.header.values(), *self.sections.values(), *self.section_args.values()]
        return {match for text in texts for match in _TEMPLATE.findall(text)}


def parse_definition(text: str, source: str = "<definition>") -> Definition:
    """Parse ``text``; any problem raises ValueError naming ``source`` and the line number."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    section_args: dict[str, str] = {}
    section_lines: dict[str, int] = {}
    current: str | None = None

    def error(number: int, message: str) -> ValueError:
        return ValueError(f"{source}: line {number}: {message}")

    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("%"):
            match = _SECTION_LINE.fullmatch(line.rstrip())
            if not match:
                raise error(number, f"malformed section line {line!r}")
            name, args = match.group(1), (match.group(2) or "").strip()
            if name.startswith("app"):
                raise error(number, f"%{name}: SCIF app sections are not supported")
            if name not in SECTIONS:
                valid = ", ".join(f"%{known}" for known in sorted(SECTIONS))
                raise error(number, f"unknown section %{name} (valid: {valid})")
            if name in sections:
                raise error(
                    number, f"duplicate section %{name} (first on line {section_lines[name]})"
                )
            sections[name], section_args[name], section_lines[name] = [], args, number
            current = name
            continue
        if current is not None:
            key = _HEADER_LINE.match(line)
            if key and key.group(1).lower() in HEADER_KEYS:
                raise error(
                    number,
                    f"header line {line.strip()!r} after the first section "
                    "(multi-stage definitions are not supported)",
                )
            sections[current].append(line)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key = _HEADER_LINE.fullmatch(stripped)
        if not key or not key.group(2).strip():
            raise error(number, f"expected 'Keyword: value' in the header, got {stripped!r}")
        name, value = key.group(1), key.group(2).strip()
        if not header and name != "Bootstrap":
            raise error(number, f"the header must start with 'Bootstrap:', not {name!r}")
        if any(name.lower() == known.lower() for known in header):
            raise error(number, f"duplicate header keyword {name!r}")
        header[name] = value

    for required in REQUIRED_HEADER:
        if required not in header:
            raise ValueError(f"{source}: line 1: the header has no '{required}:' line")
    return Definition(
        header=header,
        sections={name: "\n".join(lines).rstrip() for name, lines in sections.items()},
        section_args=section_args,
        section_lines=section_lines,
        source=source,
    )


def read_definition(path: Path) -> Definition:
    """Parse the definition file at ``path``."""
    return parse_definition(path.read_text(encoding="utf-8"), source=str(path))
