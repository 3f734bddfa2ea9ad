"""Word n-gram overlap between conversations and evaluation items, hashed and vectorised.

Text is tokenised as the ROUGE-L dedup tokenises it (:func:`laerebogen.filtering.dedup.tokenize`:
lowercased runs of letters and digits), so case and punctuation never hide a copy. Each text
field of an item is matched on its own (a long passage and a one-word answer are different
risks): a field of at least ``n`` tokens by its ``n``-grams, a shorter field of at least
``min_tokens`` by runs of ``ceil(short_share * length)`` of its tokens (the whole field at the
default share 1), a field shorter still not at all (a word or two is ordinary text, not a
leak). N-grams never span two messages of a conversation, nor two fields of an item.

Only the items' tokens get ids; every other token is id 0, which also separates messages and
fields, so a window holding a 0 cannot match. A window's hash is a polynomial in its ids modulo
2**64; the items' hashes are sorted once and the conversations' windows are looked up with
``searchsorted`` in batches, so a conversation costs its tokenisation and a few array passes.
With hashes that behave as random 64-bit values, the chance that any window of 200,000
conversations equals one of 50,000 items' hashes by accident is about 5 in a million, and a
collision could only add a match, never hide one.

An n-gram found in more conversations than ``max(common_min, common_share * conversations)`` is
common, a stock phrase of the dataset (and of the benchmark's language) rather than a leaked
item, and does not count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from laerebogen.filtering.dedup import tokenize

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so each step of the polynomial is a bijection
_BATCH_TOKENS = 1 << 20  # token ids per array pass over the conversations


class Item(NamedTuple):
    """One evaluation item: its id (shown in reports) and the texts of its fields."""

    id: str
    fields: tuple[str, ...]


class Rule(NamedTuple):
    """How items are matched (see the module docstring)."""

    n: int
    short_share: float
    min_tokens: int
    common_share: float
    common_min: int

    def run_length(self, tokens: int) -> int:
        """The matching run of a field of ``tokens`` tokens; 0: the field is not matched."""
        if tokens >= self.n:
            return self.n
        if tokens < self.min_tokens:
            return 0
        return min(tokens, max(self.min_tokens, math.ceil(self.short_share * tokens - 1e-9)))

    def common_above(self, conversations: int) -> float:
        """An n-gram in more conversations than this is common."""
        return max(self.common_min, self.common_share * conversations)


def window_hashes(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every window of ``length`` ids and whether it holds no 0 (can match)."""
    count = len(ids) - length + 1
    if count <= 0:
        return np.empty(0, np.uint64), np.empty(0, bool)
    hashes = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(length):
            hashes = hashes * _MULTIPLIER + ids[offset : offset + count]
    zeros = np.concatenate(([0], np.cumsum(ids == 0)))
    return hashes, zeros[length:] == zeros[:count]


@dataclass
class _Lengths:
    """The hashed runs of one run length: sorted unique hashes and, per hash, its items."""

    hashes: np.ndarray
    item_offsets: np.ndarray  # CSR: items of hashes[k] are items[item_offsets[k]:item_offsets[k+1]]
    items: np.ndarray


@dataclass
class BenchmarkIndex:
    """The hashed n-grams of a set of items, ready to look conversations up in."""

    rule: Rule
    item_ids: list[str]
    vocabulary: dict[str, int]
    lengths: dict[int, _Lengths]
    unmatched: list[int] = field(default_factory=list)  # items with no field long enough

    @classmethod
    def build(cls, items: Iterable[Item], rule: Rule) -> BenchmarkIndex:
        """Hash every matchable field of ``items`` (see the module docstring)."""
        vocabulary: dict[str, int] = {}
        runs: dict[int, tuple[list[int], list[int]]] = {}  # length -> ids, item of each id
        item_ids: list[str] = []
        unmatched: list[int] = []
        for number, item in enumerate(items):
            item_ids.append(item.id)
            matchable = False
            for text in item.fields:
                tokens = tokenize(text)
                length = rule.run_length(len(tokens))
                if not length:
                    continue
                matchable = True
                ids, owners = runs.setdefault(length, ([], []))
                ids.extend(vocabulary.setdefault(token, len(vocabulary) + 1) for token in tokens)
                ids.append(0)
                owners.extend([number] * (len(tokens) + 1))
            if not matchable:
                unmatched.append(number)
        lengths = {
            length: _index(np.array(ids, np.uint64), np.array(owners, np.int64), length)
            for length, (ids, owners) in sorted(runs.items())
        }
        return cls(rule, item_ids, vocabulary, lengths, unmatched)

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` (0 for a token no item has)."""
        vocabulary = self.vocabulary
        return [vocabulary.get(token, 0) for token in tokenize(text)]


def _index(ids: np.ndarray, owners: np.ndarray, length: int) -> _Lengths:
    hashes, valid = window_hashes(ids, length)
    hashes, items = hashes[valid], owners[: len(valid)][valid]
    pairs = np.unique(np.stack([hashes, items.astype(np.uint64)]), axis=1)
    unique, starts = np.unique(pairs[0], return_index=True)
    offsets = np.append(starts, pairs.shape[1]).astype(np.int64)
    return _Lengths(unique, offsets, pairs[1].astype(np.int64))


class Matches(NamedTuple):
    """Which conversations share which counting n-grams with which items."""

    conversations: int
    # conversation number -> the items it shares an n-gram (not a common one) with
    items: dict[int, list[int]]
    common: int  # distinct n-grams left out as common


def find_matches(index: BenchmarkIndex, conversations: Iterable[Sequence[str]]) -> Matches:
    """Look every conversation (the texts of the messages matched) up in ``index``."""
    found: list[np.ndarray] = []  # (conversation, length, hash slot) rows
    batch: list[int] = []
    starts: list[int] = []
    count = 0
    for number, texts in enumerate(conversations):
        count = number + 1
        starts.append(len(batch))
        for text in texts:
            batch.extend(index.ids(text))
            batch.append(0)
        if len(batch) >= _BATCH_TOKENS:
            found.append(_look_up(index, batch, starts, number + 1 - len(starts)))
            batch, starts = [], []
    if starts:
        found.append(_look_up(index, batch, starts, count - len(starts)))
    rows = np.concatenate(found) if found else np.empty((0, 3), np.int64)
    rows = np.unique(rows, axis=0)  # each n-gram once per conversation
    keys, frequency = np.unique(rows[:, 1:], axis=0, return_counts=True)
    common = keys[frequency > index.rule.common_above(count)]
    counting = ~_is_row_in(rows[:, 1:], common)
    items: dict[int, set[int]] = {}
    for conversation, length, slot in rows[counting]:
        entry = index.lengths[int(length)]
        members = entry.items[entry.item_offsets[slot] : entry.item_offsets[slot + 1]]
        items.setdefault(int(conversation), set()).update(members.tolist())
    return Matches(count, {c: sorted(members) for c, members in items.items()}, len(common))


def _look_up(index: BenchmarkIndex, batch: list[int], starts: list[int], first: int) -> np.ndarray:
    """The (conversation, length, hash slot) of every window of ``batch`` an item has;
    ``starts`` are where its conversations begin, the first being number ``first``."""
    ids = np.array(batch, np.uint64)
    beginnings = np.array(starts, np.int64)
    rows = []
    for length, entry in index.lengths.items():
        hashes, valid = window_hashes(ids, length)
        positions = np.flatnonzero(valid)
        slots = np.searchsorted(entry.hashes, hashes[positions])
        slots[slots == len(entry.hashes)] = 0
        hit = entry.hashes[slots] == hashes[positions]
        owners = np.searchsorted(beginnings, positions[hit], side="right") - 1 + first
        rows.append(np.stack([owners, np.full(len(owners), length), slots[hit]], axis=1))
    return np.concatenate(rows) if rows else np.empty((0, 3), np.int64)


def _is_row_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Whether each (length, slot) row of ``rows`` is one of ``table``'s."""
    if not len(table) or not len(rows):
        return np.zeros(len(rows), bool)
    width = int(max(rows[:, 1].max(), table[:, 1].max())) + 1
    return np.isin(rows[:, 0] * width + rows[:, 1], table[:, 0] * width + table[:, 1])
