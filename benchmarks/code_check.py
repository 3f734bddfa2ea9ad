"""The code check's throughput: 10,000 snippets must take at most 10 minutes on 2 cores.

Snippets are one Python or SQL block per answer (one sandboxed process each: the worst case,
as blocks of one message share a process), in the mix model answers show: most run, some
raise or do not parse, a few read input, and a rare one loops until the CPU limit ends it.
They run as the code_check step runs them (:func:`laerebogen.codecheck.check.check_all` with
every CPU of the machine and the default ``[code_check]`` limits) in the strongest sandbox the
machine allows. The baseline is the same snippets without a sandbox: ``python -I -c`` per
snippet (SQL through the sqlite3 module), as many at once, so the ratio is the sandbox's cost.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from laerebogen.codecheck.check import check_all, default_workers
from laerebogen.codecheck.sandbox import Sandbox
from laerebogen.config.schema import CodeCheck
from laerebogen.records import Message

TARGET_MINUTES = 10.0
# (share, language, code): what the answers' blocks are like.
MIX = (
    (
        0.55,
        "python",
        "def kvadrat(x):\n    return x * x\n\nprint([kvadrat(n) for n in range({n})])",
    ),
    (0.10, "python", "import statistics\ndata = [{n}, 2, 3, 5]\nprint(statistics.mean(data))"),
    (0.08, "python", "tal = [1, 2, 3]\nprint(tal[{n}])"),  # IndexError from 3 on
    (0.04, "python", "def f(x)\n    return x"),
    (0.04, "python", "navn = input('Dit navn: ')\nprint(navn)"),
    (
        0.17,
        "sql",
        "CREATE TABLE by (navn TEXT, indbyggere INT);\n"
        "INSERT INTO by VALUES ('Aarhus', {n});\nSELECT navn FROM by;",
    ),
    (0.02, "sql", "SELECT * FROM kunder WHERE id = {n};"),
)
LOOP = (0.002, "python", "while True:\n    pass")


def snippets(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (language, code) drawn from :data:`MIX` and :data:`LOOP`."""
    kinds = [*MIX, LOOP]
    draw = random.Random(seed)
    chosen = draw.choices(kinds, weights=[share for share, _, _ in kinds], k=count)
    return [
        (language, code.replace("{n}", str(draw.randrange(10)))) for _, language, code in chosen
    ]


def answer(language: str, code: str) -> tuple[Message, ...]:
    return (
        Message("user", "Vis mig et eksempel."),
        Message("assistant", f"Her er et eksempel:\n\n```{language}\n{code}\n```\n"),
    )


def plain(language: str, code: str, timeout: float) -> None:
    """The baseline: the snippet in a plain interpreter, no isolation or limits."""
    if language == "sql":
        code = f"import sqlite3\nsqlite3.connect(':memory:').executescript({code!r})"
    command = [sys.executable, "-I", "-c", code]
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       check=False)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=1_000, help="snippets of the baseline")
    args = parser.parse_args()
    settings = CodeCheck()
    workers = default_workers()
    drawn = snippets(args.snippets)
    sandbox = Sandbox(settings)
    start = time.perf_counter()
    results = check_all([answer(*snippet) for snippet in drawn], sandbox, workers)
    seconds = time.perf_counter() - start
    outcomes = Counter(check.outcome for checks in results for check in checks)
    base = drawn[: args.baseline]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda s: plain(*s, timeout=settings.timeout_seconds), base))
    baseline = (time.perf_counter() - start) / max(len(base), 1) * len(drawn)
    minutes = seconds / 60 * 10_000 / len(drawn)
    print(f"{len(drawn)} snippets on {workers} workers in {seconds:.1f} s "
          f"({len(drawn) / seconds:.1f}/s), sandbox {sandbox.isolation}")  # fmt: skip
    print("outcomes: " + ", ".join(f"{o} {n}" for o, n in outcomes.most_common()))
    print(f"baseline without a sandbox (from {len(base)} snippets): {baseline:.1f} s")
    print(f"10,000 snippets: {minutes:.2f} min (target <= {TARGET_MINUTES:g} min)")
    print(
        f"RESULT snippets={len(drawn)} workers={workers} seconds={seconds:.1f} "
        f"minutes_10000={minutes:.2f} sandbox_vs_plain={seconds / baseline:.2f} "
        f"isolation={sandbox.isolation} ok={minutes <= TARGET_MINUTES}"
    )


if __name__ == "__main__":
    main()
