"""Exact global ROUGE-L deduplication on Danish word tokens.

``rouge_score``'s default tokenizer keeps only ``[a-z0-9]``, so "sætning" becomes "s" and
"tning" and Danish near-duplicates are judged on fragments. Here a token is a lowercased
run of Unicode letters and digits (æ, ø, å and accented letters included).

Pairwise ROUGE-L grows with n²; this module makes the same decisions as brute force with
``rouge_score`` while comparing only pairs that could exceed the threshold. ROUGE-L's
F-measure is ``2·L/(m+n)`` (``L`` the LCS length, ``m``, ``n`` the lengths), and ``L`` is at
most the multiset token overlap, so a pair needs an overlap above ``t·(m+n)/2``. That gives
exact filters before any LCS is computed:

* length: ``min(m, n) > t·(m+n)/2`` bounds the partner's length;
* prefix: with tokens ordered by rarity, two texts that overlap enough must share a token
  among their first ``m - o + 1`` (the standard prefix-filtering argument), so only the
  rare prefixes go into an inverted index and only they are probed;
* position: a candidate whose matches so far plus the tokens left on either side cannot
  reach the needed overlap is dropped (PPJoin-style);
* match count: prefixes longer than a pair needs must share one more token per extra slot;
* overlap: the exact multiset overlap of the two texts.

Surviving pairs get an exact LCS on token ids, and the final decision uses rouge_score's own
floating-point formula. Every bound is loosened by a tiny epsilon, so rounding can only let
more pairs through to the exact check. The join runs in :mod:`laerebogen.filtering.dedup_kernel`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from rapidfuzz.distance import LCSseq

from laerebogen.filtering.dedup_kernel import EPSILON, join_slice, rouge_l_fmeasure

_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lowercased Unicode word tokens (letters and digits); punctuation is dropped."""
    return _WORD.findall(text.lower())


_THREADS = max(1, len(os.sched_getaffinity(0)))  # the CPUs this job may use, not the node's


def rouge_l(first: str, second: str) -> float:
    """ROUGE-L F-measure of two texts under :func:`tokenize`."""
    first_tokens, second_tokens = tokenize(first), tokenize(second)
    common = LCSseq.similarity(first_tokens, second_tokens)
    return rouge_l_fmeasure(common, len(first_tokens), len(second_tokens))


class _JoinInput(NamedTuple):
    """Flat arrays for :func:`laerebogen.filtering.dedup_kernel.join_slice`, texts in visiting
    order."""

    visiting_order: np.ndarray  # visiting number -> index of the text
    offsets: np.ndarray
    elements: np.ndarray
    tokens: np.ndarray
    posting_offsets: np.ndarray
    posting_texts: np.ndarray
    posting_positions: np.ndarray


def _token_ids(texts: Iterable[str]) -> tuple[list[int], list[int]]:
    """Token ids of every text, concatenated, and each text's length."""
    vocabulary: dict[str, int] = {}
    ids: list[int] = []
    lengths: list[int] = []
    for text in texts:
        tokens = tokenize(text)
        lengths.append(len(tokens))
        ids.extend(vocabulary.setdefault(token, len(vocabulary)) for token in tokens)
    return ids, lengths


def _prepare(texts: Iterable[str], threshold: float) -> _JoinInput | None:
    """Number tokens, order each text's token occurrences by rarity and index the prefixes.

    None when the texts hold no token at all (then nothing is similar to anything).
    """
    flat_ids, length_list = _token_ids(texts)
    if not flat_ids:
        return None
    lengths = np.asarray(length_list, np.int64)
    token = np.asarray(flat_ids, np.int64)
    owner = np.repeat(np.arange(lengths.size), lengths)
    # Visit texts from shortest to longest (stable), and lay the arrays out in that order.
    order = np.argsort(lengths, kind="stable")
    rank_of_text = np.empty_like(order)
    rank_of_text[order] = np.arange(order.size)
    starts = np.concatenate(([0], np.cumsum(lengths)))
    lengths = lengths[order]
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    layout = np.repeat(starts[order] - offsets[:-1], lengths) + np.arange(offsets[-1])
    token, owner = token[layout], rank_of_text[owner[layout]]
    vocabulary = int(token.max()) + 1
    # k-th occurrence of a token within its text: elements are (token, k) pairs.
    key = owner * vocabulary + token
    by_key = np.argsort(key, kind="stable")
    sorted_key = key[by_key]
    run_start = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    run_lengths = np.diff(np.r_[run_start, sorted_key.size])
    occurrence = np.empty_like(token)
    occurrence[by_key] = np.arange(sorted_key.size) - np.repeat(run_start, run_lengths)
    # Rarity: tokens in fewer texts first (ties by id); elements ordered by (rarity, k).
    document_frequency = np.bincount(token[by_key][run_start], minlength=vocabulary)
    rarity = np.empty(vocabulary, np.int64)
    rarity[np.lexsort((np.arange(vocabulary), document_frequency))] = np.arange(vocabulary)
    element_key = rarity[token] * (int(occurrence.max()) + 1) + occurrence
    _, element = np.unique(element_key, return_inverse=True)
    within = np.lexsort((element, owner))
    elements = element[within].astype(np.int32)
    position = np.arange(elements.size) - offsets[owner[within]]
    # Index prefix: later partners are at least as long, so overlap must exceed t·length.
    least = np.maximum(1, np.ceil(threshold * lengths - EPSILON)).astype(np.int64)
    indexed = position < np.repeat(lengths - least + 1, lengths)
    entry_element = elements[indexed]
    entry_text = owner[within][indexed]
    by_element = np.lexsort((entry_text, entry_element))
    posting_offsets = np.searchsorted(entry_element[by_element], np.arange(int(element.max()) + 2))
    return _JoinInput(
        visiting_order=order,
        offsets=offsets.astype(np.int64),
        elements=elements,
        tokens=token.astype(np.int32),
        posting_offsets=posting_offsets.astype(np.int64),
        posting_texts=entry_text[by_element].astype(np.int32),
        posting_positions=position[indexed][by_element].astype(np.int32),
    )


def similar_pairs(texts: Sequence[str], threshold: float) -> np.ndarray:
    """Every pair ``(i, j)``, ``i != j``, of ``texts`` with ROUGE-L above ``threshold``.

    The pairs are found in parallel threads (the kernel releases the GIL).
    """
    data = _prepare(texts, threshold)
    if data is None:
        return np.empty((0, 2), np.int64)
    arrays = data[1:]
    with ThreadPoolExecutor(_THREADS) as pool:
        parts = list(
            pool.map(lambda first: join_slice(first, _THREADS, threshold, *arrays), range(_THREADS))
        )
    pairs = np.concatenate(parts)
    return data.visiting_order[pairs] if pairs.size else pairs


def rouge_l_dedup(
    texts: Sequence[str],
    threshold: float = 0.7,
    existing: Iterable[str] = (),
    exempt: Collection[tuple[int, int]] = (),
) -> list[int]:
    """Indices of ``texts`` to keep, in order.

    Text ``i`` is kept iff its ROUGE-L F-measure with every earlier kept text and with every
    text of ``existing`` is at most ``threshold``: the decisions of brute force with
    ``rouge_score`` and this module's tokenizer, without comparing every pair. A pair
    ``(e, i)`` in ``exempt`` is never compared: text ``i`` may resemble ``existing[e]``
    (an evolved task its own ancestor).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    pool = list(existing)
    if threshold >= 1.0:
        return list(range(len(texts)))
    offset = len(pool)
    pairs = similar_pairs([*pool, *texts], threshold)
    pairs.sort(axis=1)
    pairs = pairs[pairs[:, 1] >= offset] - offset  # pairs of two pool texts do not matter
    exempted = set(exempt)
    rejected_by_pool = {
        later
        for earlier, later in pairs[pairs[:, 0] < 0].tolist()
        if (earlier + offset, later) not in exempted
    }
    similar: dict[int, list[int]] = {}
    for earlier, later in pairs[pairs[:, 0] >= 0].tolist():
        similar.setdefault(later, []).append(earlier)
    kept = [False] * len(texts)
    for position in range(len(texts)):
        if position not in rejected_by_pool:
            kept[position] = not any(kept[earlier] for earlier in similar.get(position, ()))
    return [position for position, keep in enumerate(kept) if keep]


def near_duplicate_pairs(texts: list[str], threshold: float = 0.7) -> list[tuple[int, int, float]]:
    """Every pair ``(i, j, score)`` with ``i < j`` whose ROUGE-L exceeds ``threshold``.

    Quadratic: meant for small sets such as the seed tasks.
    """
    tokens = [tokenize(text) for text in texts]
    pairs = []
    for i, first in enumerate(tokens):
        for j in range(i + 1, len(tokens)):
            second = tokens[j]
            score = rouge_l_fmeasure(LCSseq.similarity(first, second), len(first), len(second))
            if score > threshold:
                pairs.append((i, j, score))
    return pairs
