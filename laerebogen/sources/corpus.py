"""A corpus of Danish texts cut into passages, the inputs of the grounded source.

The corpus is a JSONL file (a ``text`` per line, optionally an ``id``) or a folder of UTF-8
``.txt`` files (one document each, in name order, subfolders included). A document's
paragraphs (split at blank lines, their lines joined) are packed into passages of
``min_passage_chars`` to ``max_passage_chars``: short paragraphs are joined with the next, a
paragraph longer than the maximum is cut at sentence ends (a sentence longer than the maximum
at a space). A document's last piece shorter than the minimum joins the passage before it when
both fit the maximum, else it is left out: too little to ask about (as is a short piece that
fits with neither neighbour).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from laerebogen.config.schema import Grounded
from laerebogen.errors import SourceError
from laerebogen.records import Example, Passage, Provenance, record_id

PASSAGE_STAGE = "passage"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def corpus_passages(settings: Grounded) -> list[Example]:
    """Every passage of the corpus as an input record of the grounded stage, in corpus order:
    the passage is the ``input``, its file and id are in the provenance."""
    passages: list[Example] = []
    for file, document, text in corpus_documents(settings.corpus_path()):
        pieces = passages_of(text, settings.min_passage_chars, settings.max_passage_chars)
        for number, piece in enumerate(pieces, start=1):
            passage = Passage(file=file, id=f"{document}#{number}")
            passages.append(
                Example(
                    id=record_id(PASSAGE_STAGE, file, passage.id),
                    instruction="",
                    input=piece,
                    provenance=Provenance(origin="grounded", source="grounded", passage=passage),
                )
            )
    if not passages:
        raise SourceError(f"{settings.corpus_path()}: the corpus has no passage")
    return passages


def corpus_documents(path: Path) -> Iterator[tuple[str, str, str]]:
    """(file relative to the corpus, document id, text) of every document of the corpus."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise SourceError(f"{path}: no .txt files in the corpus folder")
        for file in files:
            relative = file.relative_to(path).as_posix()
            yield relative, relative.removesuffix(".txt"), _read_text(file)
    elif path.is_file():
        yield from _jsonl_documents(path)
    else:
        raise SourceError(f"{path}: no corpus there (a JSONL file or a folder of .txt files)")


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"{file}: not UTF-8 (byte {error.start})") from None


def _jsonl_documents(path: Path) -> Iterator[tuple[str, str, str]]:
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise SourceError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise SourceError(f'{where}: expected an object with a "text" string')
        document = value.get("id", f"line-{line_number}")
        yield path.name, str(document), value["text"]


def passages_of(text: str, min_chars: int, max_chars: int) -> list[str]:
    """The passages of one document (see the module's docstring)."""
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        joined = " ".join(paragraph.split())
        if joined:
            pieces += _sentences_within(joined, max_chars) if len(joined) > max_chars else [joined]
    passages: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) >= min_chars:
            passages.append(current)
            current = ""
        together = f"{current}\n\n{piece}" if current else piece
        if len(together) > max_chars:
            passages.append(current)  # short, but the next piece does not fit with it
            current = piece
        else:
            current = together
    if len(current) >= min_chars:
        passages.append(current)
    elif current and passages and len(passages[-1]) + 2 + len(current) <= max_chars:
        passages[-1] += f"\n\n{current}"
    return [passage for passage in passages if len(passage) >= min_chars]


def _sentences_within(paragraph: str, max_chars: int) -> list[str]:
    """A long paragraph cut at sentence ends into pieces of at most ``max_chars``."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        rest = sentence
        while len(rest) > max_chars:  # no sentence end in reach: cut at a space
            cut = rest.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(rest[:cut])
            rest = rest[cut:].strip()
        together = f"{current} {rest}" if current else rest
        if len(together) > max_chars:
            pieces.append(current)
            current = rest
        else:
            current = together
    return [*pieces, current] if current else pieces
