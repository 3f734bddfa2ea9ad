"""Finding code blocks and their languages in answers written in Markdown."""

from __future__ import annotations

import pytest

from laerebogen.codecheck.blocks import CodeBlock, code_blocks, is_python, language_of


def test_fenced_blocks_come_in_order_with_their_normalised_languages() -> None:
    answer = (
        "Her er en funktion:\n\n```py\ndef dobbelt(x):\n    return 2 * x\n```\n\n"
        "Og forespørgslen:\n\n~~~SQLite\nSELECT 1;\n~~~\n\nKør den med\n```bash\nls -l\n```\n"
    )
    assert code_blocks(answer) == [
        CodeBlock("python", "def dobbelt(x):\n    return 2 * x"),
        CodeBlock("sql", "SELECT 1;"),
        CodeBlock("bash", "ls -l"),
    ]


def test_a_block_left_open_runs_to_the_end_of_the_message() -> None:
    assert code_blocks("Sådan:\n```python\nprint('hej')\n") == [
        CodeBlock("python", "print('hej')\n")
    ]


def test_a_longer_fence_holds_a_shorter_one() -> None:
    answer = "````markdown\n```python\nx = 1\n```\n````"
    assert code_blocks(answer) == [CodeBlock("markdown", "```python\nx = 1\n```")]


@pytest.mark.parametrize(
    ("code", "python"),
    [
        ("total = sum(range(10))\nprint(total)", True),
        ("print('hej')", True),
        ("for i in range(3):\n    print(i)", True),
        ("Dette er bare en sætning på dansk.", False),  # prose does not parse
        ("hej", False),  # a bare name parses, but is a word
        ("42", False),
        ("SELECT navn FROM kunder;", False),
    ],
)
def test_an_untagged_block_is_python_when_it_parses_and_is_more_than_a_word(
    code: str, python: bool
) -> None:
    assert is_python(code) is python
    expected = "python" if python else "untagged"
    assert code_blocks(f"```\n{code}\n```") == [CodeBlock(expected, code)]


def test_an_interactive_session_is_run_as_its_statements_without_the_printed_results() -> None:
    session = ">>> x = [3, 1, 2]\n>>> for n in sorted(x):\n...     print(n)\n...\n1\n2\n3"
    (block,) = code_blocks(f"```pycon\n{session}\n```")
    assert block == CodeBlock("python", "x = [3, 1, 2]\nfor n in sorted(x):\n    print(n)\n")
    (untagged,) = code_blocks(f"```\n{session}\n```")
    assert untagged == block


@pytest.mark.parametrize(
    ("tag", "language"),
    [("Python3", "python"), ("sqlite3", "sql"), ("sh", "bash"), ("", "untagged"), ("Rust", "rust")],
)
def test_tags_are_normalised(tag: str, language: str) -> None:
    assert language_of(tag) == language


def test_a_message_without_fences_has_no_blocks() -> None:
    assert code_blocks("Brug `print()` til at skrive ud.\n\n    x = 1  # indented, no fence") == []
