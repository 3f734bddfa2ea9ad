"""``laerebogen verify``: every file of a run against its manifest, and what a rerun redoes.

``status`` reads only small state files, so it cannot see a shard whose bytes changed after
it finished (a disk error, a stray edit, a copy cut short). Readers check a file when they
open it, which may be hours into a rerun; ``verify`` checks them all at once, reading every
byte, and says for each damaged shard what to delete so that the rerun makes it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from laerebogen.outputs.status import run_status
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import run_config


def verification(run_dir: str | Path) -> tuple[list[str], bool]:
    """The report's lines and whether every file is intact."""
    store = RunStore(run_dir)
    run_config(store)  # a StoreError when run_dir is not a run
    checked = 0
    damaged: list[str] = []
    for _, problem in store.verify():
        checked += 1
        if problem is not None:
            damaged.append(problem)
    lines = [*damaged, *_unfinished(run_dir)]
    if damaged:
        lines.append(f"{run_dir}: {len(damaged)} of {checked} shards damaged (see above)")
    else:
        lines.append(f"{run_dir}: {checked} shards verified, every file as its manifest says")
    return lines, not damaged


def _unfinished(run_dir: str | Path) -> Iterator[str]:
    """What a rerun does besides regenerating damaged shards: the steps not merged yet."""
    for status in run_status(run_dir):
        if status.state == "merged":
            continue
        left = status.shards - status.done
        work = f"runs {left} shard(s), then merges" if left else "merges"
        yield f"{status.step}: {status.done}/{status.shards} shards done; a rerun {work}"


def show_verification(run_dir: str | Path) -> None:
    """Print the report; exit 1 when a file is damaged."""
    lines, intact = verification(run_dir)
    print("\n".join(lines))
    if not intact:
        raise SystemExit(1)
