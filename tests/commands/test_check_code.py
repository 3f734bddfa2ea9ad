"""``laerebogen check-code``: the run's code check on any JSONL of conversations."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.commands import cli


def chat(answer: str, **extra: object) -> str:
    messages = [
        {"role": "user", "content": "Vis mig kode."},
        {"role": "assistant", "content": answer},
    ]
    return json.dumps({"messages": messages, **extra}, ensure_ascii=False)


def test_conversations_with_failing_code_go_to_the_rejects_with_their_reason(
    tmp_path: Path,
) -> None:
    source = tmp_path / "samtaler.jsonl"
    source.write_text(
        "\n".join(
            [
                chat(
                    "```python\ndef f(x):\n    return 2 * x\n```\nSå:\n```\nprint(f(21))\n```",
                    id="a",
                ),
                chat("```sql\nSELEC 1;\n```"),
                chat("Ingen kode her."),
                chat("```bash\nls\n```\n```python\nimport time\ntime.sleep(30)\n```"),
                chat("```python\nnavn = input()\n```"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out, rejects = tmp_path / "ud.jsonl", tmp_path / "afvist.jsonl"
    result = cli("check-code", str(source), str(out), "--rejects", str(rejects),
                 "--set", "code_check.timeout_seconds=1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:4] == [
        f"{source}: read 5, kept 3, rejected 2",
        "  code_syntax_error              1",
        "  code_timeout                   1",
        f"code blocks: 6 (sandbox: {result.stdout.split('sandbox: ')[1].split(')')[0]})",
    ]
    assert "  python             4: not_verifiable 1, ok 2, timeout 1" in result.stdout
    assert "checked 5/5 conversations" in result.stderr
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("id") for line in kept] == ["a", None, None]  # other keys are kept
    assert kept[0]["code_check"] == [
        {"message": 1, "block": 0, "language": "python", "outcome": "ok"},
        {"message": 1, "block": 1, "language": "python", "outcome": "ok"},
    ]
    assert kept[1]["code_check"] == []
    assert kept[2]["code_check"][0]["outcome"] == "not_verifiable"
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["location"], r["reason"]) for r in rejected] == [
        (f"{source}:2", "code_syntax_error"),
        (f"{source}:4", "code_timeout"),
    ]
    assert rejected[1]["detail"] == "message 1 block 1: timeout over 1 s"
    assert rejected[1]["record"]["code_check"][0] == {
        "message": 1, "block": 0, "language": "bash", "outcome": "not_checked",
    }  # fmt: skip


def test_a_line_that_is_not_a_conversation_is_a_one_line_error(tmp_path: Path) -> None:
    source = tmp_path / "forkert.jsonl"
    source.write_text(chat("ok") + '\n{"instruction": "Skriv et digt."}\n', encoding="utf-8")
    result = cli("check-code", str(source), str(tmp_path / "ud.jsonl"))
    assert result.returncode == 2 and not (tmp_path / "ud.jsonl").exists()
    assert result.stderr.strip() == (
        f'laerebogen: error: {source}:2: expected {{"messages": [{{"role": "user" | '
        '"assistant", "content": "..."}, ...]}'
    )
    missing = cli("check-code", str(tmp_path / "ingen.jsonl"), str(tmp_path / "ud.jsonl"))
    assert missing.returncode == 2 and "ingen.jsonl: no such file" in missing.stderr
