"""``laerebogen check-code``: the code check of a run, on any JSONL file of conversations.

Each line is a JSON object with ``messages`` (``[{"role", "content"}, ...]``); other keys
are kept. Conversations whose code blocks do not fail go to the output with ``code_check``
added (each block's outcome); the others, as ``filter`` does, to ``--rejects`` with the
reason (the first way a block failed) and the record.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import msgspec

from laerebogen.chunking import chunked
from laerebogen.codecheck.check import check_all
from laerebogen.codecheck.sandbox import Sandbox
from laerebogen.commands.item_files import json_lines
from laerebogen.config.schema import CodeCheck
from laerebogen.errors import LaerebogenError
from laerebogen.outputs.export import failed_outcomes
from laerebogen.records import Message

CHUNK = 256  # conversations checked between progress lines
ROLES = ("system", "user", "assistant")


def read_conversations(path: Path) -> Iterator[tuple[str, dict, tuple[Message, ...]]]:
    """(location, JSON object, messages) of each line; a malformed line is a one-line error."""
    for location, _, record in json_lines(path):
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise LaerebogenError(
                f'{location}: expected {{"messages": [{{"role": "user" | "assistant", '
                '"content": "..."}, ...]}'
            )
        yield location, record, tuple(Message(m["role"], m["content"]) for m in messages)


def check_code_file(
    source: Path,
    target: Path,
    rejects: Path | None,
    settings: CodeCheck,
    progress: TextIO = sys.stderr,
) -> str:
    """Check every conversation of ``source``; returns the counts as text."""
    from laerebogen.store.atomic import atomic_lines

    conversations = list(read_conversations(source))
    sandbox = Sandbox(settings)
    kept: list[bytes] = []
    rejected: list[bytes] = []
    reasons: Counter[str] = Counter()
    blocks: Counter[tuple[str, str]] = Counter()
    for done, chunk in enumerate(chunked(conversations, CHUNK)):
        results = check_all([messages for _, _, messages in chunk], sandbox, settings.workers)
        for (location, record, _), checks in zip(chunk, results, strict=True):
            blocks.update((check.language, check.outcome) for check in checks)
            line = msgspec.json.encode({**record, "code_check": checks})
            failed = [check for check in checks if check.failed]
            if not failed:
                kept.append(line)
                continue
            reason = f"code_{failed_outcomes(failed)[0]}"
            reasons[reason] += 1
            detail = "; ".join(f"message {c.message} block {c.block}: {c.outcome} {c.detail}"
                               for c in failed)  # fmt: skip
            rejected.append(msgspec.json.encode(
                {"location": location, "reason": reason, "detail": detail.strip()}
            )[:-1] + b',"record":' + line + b"}")  # fmt: skip
        checked = min((done + 1) * CHUNK, len(conversations))
        progress.write(f"checked {checked}/{len(conversations)} conversations\n")
        progress.flush()
    atomic_lines(target, kept)
    if rejects is not None:
        atomic_lines(rejects, rejected)
    counts = summary(
        len(conversations), reasons, blocks, source=source, isolation=sandbox.isolation
    )
    return counts + f"\n-> {target}" + (f" (rejects: {rejects})" if rejects else "")


def summary(
    read: int,
    reasons: Counter[str],
    blocks: Counter[tuple[str, str]],
    *,
    source: Path,
    isolation: str,
) -> str:
    """Conversations read, kept and rejected by reason; blocks by language and outcome."""
    rejected = reasons.total()
    lines = [f"{source}: read {read}, kept {read - rejected}, rejected {rejected}"]
    lines += [f"  {reason:<24} {count:>7}" for reason, count in reasons.most_common()]
    lines.append(f"code blocks: {blocks.total()} (sandbox: {isolation})")
    languages = Counter({language: 0 for language, _ in blocks})
    for (language, _), count in blocks.items():
        languages[language] += count
    for language, total in languages.most_common():
        outcomes = ", ".join(
            f"{outcome} {count}"
            for (lang, outcome), count in sorted(blocks.items())
            if lang == language
        )
        lines.append(f"  {language:<12} {total:>7}: {outcomes}")
    return "\n".join(lines)
