"""Cutting work into pieces of a fixed size: shards, chunks, array windows, engine batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter); reads ``items`` lazily, so
    a stream larger than memory is cut without being held whole."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, not {size}")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
