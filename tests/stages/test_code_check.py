"""The code_check stage: each conversation back with its blocks' outcomes, nothing rejected."""

from __future__ import annotations

from laerebogen.codecheck.sandbox import Sandbox
from laerebogen.config.schema import CodeCheck
from laerebogen.records import BlockCheck, Step
from laerebogen.stages.code_check import CodeCheckStage
from laerebogen.stages.core import Context
from tests.support.finished_run import conversation

PYTHON_ANSWER = (
    "Sådan lægger du tal sammen:\n\n```python\ndef læg_sammen(a, b):\n    return a + b\n```\n\n"
    "og bruger funktionen:\n\n```\nprint(læg_sammen(2, 3))\n```"
)
MIXED_ANSWER = "Kør\n```bash\nls\n```\nog så\n```sql\nSELECT 1 +;\n```"


def test_each_conversation_comes_back_with_each_blocks_outcome_and_a_step() -> None:
    records = [
        conversation("Hvad er 2 + 2?", "4.", index=0),
        conversation("Skriv en funktion.", PYTHON_ANSWER, "Og i SQL?", MIXED_ANSWER, index=1),
        conversation("Del med nul.", "```python\n1 / 0\n```", index=2),
    ]
    sandbox = Sandbox(CodeCheck(), isolation="none")
    stage = CodeCheckStage(sandbox, workers=2)
    outcomes = stage.process_chunk(records, Context(run_seed=0, shard=3, attempt=1))
    checked = [outcome.records[0] for outcome in outcomes]
    assert [outcome.rejections for outcome in outcomes] == [(), (), ()]
    assert [record.id for record in checked] == [record.id for record in records]
    assert checked[0].code_check == ()
    assert checked[1].code_check == (
        BlockCheck(1, 0, "python", "ok"),
        BlockCheck(1, 1, "python", "ok"),  # untagged, uses the first block's function
        BlockCheck(3, 0, "bash", "not_checked"),
        BlockCheck(3, 1, "sql", "syntax_error", 'near ";": syntax error'),
    )
    assert checked[2].code_check == (BlockCheck(1, 0, "python", "exception", "ZeroDivisionError"),)
    assert checked[2].code_check[0].failed
    assert checked[2].provenance.steps[-1] == Step(
        "code_check", shard=3, attempt=1, note="sandbox: none"
    )
    assert checked[2].conversation() == records[2].conversation()  # no text changes
