"""Checks the code of whole conversations: every assistant message's blocks, in parallel.

Python and SQL blocks of a message run in one sandboxed process (:mod:`.sandbox`); blocks
in other languages are ``not_checked``. Messages run on ``workers`` threads, each waiting on
its own process, so a shard keeps every CPU it was given busy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from laerebogen.codecheck.blocks import RUNNABLE, code_blocks
from laerebogen.codecheck.sandbox import Block, Sandbox
from laerebogen.records import BlockCheck, Message


def default_workers() -> int:
    """The CPUs this process may use (a SLURM task's ``--cpus-per-task``, not the node's)."""
    return len(os.sched_getaffinity(0))


def check_message(index: int, message: Message, sandbox: Sandbox) -> list[BlockCheck]:
    """The result of each code block of one message (``index`` in its conversation)."""
    blocks = [block for block in code_blocks(message.content) if block.code.strip()]
    runnable = [Block(block.language, block.code) for block in blocks if block.language in RUNNABLE]
    ran = iter(sandbox.run(runnable))
    checks = []
    for position, block in enumerate(blocks):
        if block.language in RUNNABLE:
            result = next(ran)
            checks.append(
                BlockCheck(index, position, block.language, result.outcome, result.detail)
            )
        else:
            checks.append(BlockCheck(index, position, block.language, "not_checked"))
    return checks


def check_conversation(messages: Sequence[Message], sandbox: Sandbox) -> tuple[BlockCheck, ...]:
    """The results of every code block of a conversation's assistant messages, in order."""
    return tuple(
        check
        for index, message in enumerate(messages)
        if message.role == "assistant"
        for check in check_message(index, message, sandbox)
    )


def check_all(
    conversations: Sequence[Sequence[Message]], sandbox: Sandbox, workers: int = 0
) -> list[tuple[BlockCheck, ...]]:
    """:func:`check_conversation` of each conversation, in order, ``workers`` at a time
    (0: :func:`default_workers`)."""
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return list(pool.map(lambda messages: check_conversation(messages, sandbox), conversations))
