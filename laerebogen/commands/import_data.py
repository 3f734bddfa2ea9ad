"""``laerebogen import``: check a dataset file as a run would import it, before the run.

It reads the file as ``[sources.imports]`` does, screens and deduplicates it with the config's
filters, and prints what would be kept and why rows would not be, each rejection by its
``file:row``; ``--rejects`` writes every rejection as a JSON line.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec

from laerebogen.config.schema import Config
from laerebogen.pipeline.imports import screened_import
from laerebogen.sources.imports import check_import_name

SHOWN_REJECTIONS = 10


def check_import(
    path: Path, name: str, config: Config, multi_turn: bool, rejects: Path | None
) -> str:
    """The counts of importing ``path`` as ``name``, the first rejections with their rows."""
    from laerebogen.store.atomic import atomic_lines

    check_import_name(name)
    kept, rejected = screened_import(config, path, name, multi_turn)
    reasons = Counter(rejection.reason for rejection in rejected)
    lines = [
        f"{path}: {len(kept) + len(rejected)} rows as import:{name}: kept {len(kept)}, "
        f"rejected {len(rejected)}"
    ]
    lines += [f"  {reason:<24} {count:>7}" for reason, count in reasons.most_common()]
    for rejection in rejected[:SHOWN_REJECTIONS]:
        lines.append(f"{rejection.source_id}: {rejection.reason}: {rejection.detail}")
    if len(rejected) > SHOWN_REJECTIONS:
        lines.append(f"... and {len(rejected) - SHOWN_REJECTIONS} more")
    if rejects is not None:
        atomic_lines(rejects, [msgspec.json.encode(rejection) for rejection in rejected])
        lines.append(f"rejections -> {rejects}")
    return "\n".join(lines)
