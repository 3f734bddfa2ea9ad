"""The code_check stage: runs the code of every conversation's answers in the sandbox.

No model: each record comes back with ``code_check``, the outcome of each code block of its
assistant messages (empty when it has none), and a provenance step naming the sandbox's
isolation. Nothing is rejected here; the export's filtered version leaves out conversations
with a failing block.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from laerebogen.codecheck.check import check_all
from laerebogen.codecheck.sandbox import Sandbox
from laerebogen.records import Example
from laerebogen.stages.core import Context, CpuStage, Outcome


class CodeCheckStage(CpuStage):
    """Checks a chunk's conversations on ``workers`` threads (0: every CPU of the shard)."""

    name = "code_check"

    def __init__(self, sandbox: Sandbox, workers: int = 0) -> None:
        self.sandbox = sandbox
        self.workers = workers

    def process_chunk(self, records: Sequence[Example], context: Context) -> list[Outcome]:
        checks = check_all(
            [record.conversation() for record in records], self.sandbox, self.workers
        )
        step = context.step(self.name, note=f"sandbox: {self.sandbox.isolation}")
        return [
            Outcome(records=(msgspec.structs.replace(record, code_check=check).with_step(step),))
            for record, check in zip(records, checks, strict=True)
        ]
