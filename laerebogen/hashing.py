"""The sha256 of a file, as manifests and model preparation record it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of_file(path: Path) -> str:
    """The file's sha256 as hex, read in blocks so that a 50 GB model file fits in memory."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
