"""One way to cut work into pieces: every item once, in order, lazily."""

from __future__ import annotations

import itertools

import pytest

from laerebogen.chunking import chunked


def test_chunks_cover_every_item_once_in_order() -> None:
    chunks = list(chunked(range(37), 16))
    assert [len(chunk) for chunk in chunks] == [16, 16, 5]
    assert [item for chunk in chunks for item in chunk] == list(range(37))
    assert list(chunked([], 3)) == []


def test_a_stream_is_read_as_far_as_the_chunks_taken() -> None:
    endless = itertools.count()
    assert next(chunked(endless, 4)) == [0, 1, 2, 3]
    assert next(endless) == 4


def test_a_chunk_size_below_one_is_a_bug() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        list(chunked([1], 0))
