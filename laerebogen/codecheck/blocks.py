"""Code blocks in a Markdown answer: where they are and in which language.

Fenced blocks (three or more backticks or tildes, closed by the same fence or the end of
the message) with the fence's tag as the language, normalised (``py``, ``python3`` ->
``python``; ``sqlite`` -> ``sql``). An untagged block is Python when it parses as Python and
is more than a bare word or value (prose parses as nothing else); else ``untagged``. Python
shown as an interactive session (``>>>`` prompts) is run as its statements, without the
printed results.
"""

from __future__ import annotations

import ast
import re

import msgspec

RUNNABLE = ("python", "sql")
UNTAGGED = "untagged"
ALIASES = {
    "py": "python",
    "python3": "python",
    "py3": "python",
    "pycon": "python",
    "sqlite": "sql",
    "sqlite3": "sql",
    "sh": "bash",
    "shell": "bash",
    "zsh": "bash",
    "js": "javascript",
    "ts": "typescript",
    "c++": "cpp",
    "yml": "yaml",
}
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[^\s`{]*)[^\n]*$")
_PROMPT = re.compile(r"^(>>>|\.\.\.)( |$)")


class CodeBlock(msgspec.Struct, frozen=True):
    """One block of a message: its language (normalised tag, or inferred) and source."""

    language: str
    code: str


def language_of(tag: str) -> str:
    """The normalised language of a fence tag (``python``, ``sql``, ... or ``untagged``)."""
    tag = tag.strip().lower().lstrip(".")
    return ALIASES.get(tag, tag) if tag else UNTAGGED


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(tag, code) of each fenced block of ``text``, in order."""
    blocks = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence = opening.group("fence")
        body = []
        while index < len(lines):
            line = lines[index]
            index += 1
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(line)
        blocks.append((opening.group("tag"), "\n".join(body)))
    return blocks


def is_python(code: str) -> bool:
    """Whether untagged ``code`` is Python: it parses, and is more than bare names/values."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)))
        for node in tree.body
    )


def session_statements(code: str) -> str:
    """The statements of an interactive session (``>>>``/``...`` lines), prompts removed;
    ``code`` itself when it is not one."""
    lines = code.split("\n")
    if not any(line.startswith(">>>") for line in lines):
        return code
    return "\n".join(_PROMPT.sub("", line) for line in lines if _PROMPT.match(line))


def code_blocks(text: str) -> list[CodeBlock]:
    """The code blocks of one message with their languages."""
    blocks = []
    for tag, source in fenced_blocks(text):
        language, statements = language_of(tag), session_statements(source)
        if language == UNTAGGED and is_python(statements):
            language = "python"
        blocks.append(CodeBlock(language, statements if language == "python" else source))
    return blocks
