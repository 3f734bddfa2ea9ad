"""The compiled inner loop of the ROUGE-L similarity join (numba, releases the GIL).

Inputs are flat arrays prepared by :mod:`laerebogen.filtering.dedup`, with texts numbered in the
order they are visited (shortest first). ``elements`` holds each text's token occurrences as global
element ids sorted by rarity; ``tokens`` holds its token ids in reading order (for the LCS).
The posting lists hold, per element, the texts whose indexed prefix contains it, in visiting
order, with the element's position in that text's rarity order.
"""

from __future__ import annotations

import math

import numba
import numpy as np

EPSILON = 1e-9


@numba.njit(cache=True, inline="always")
def _needed_overlap(threshold: float, first: int, second: int) -> int:
    """Fewest common tokens that can still give an F-measure above the threshold (loosened)."""
    return math.ceil(threshold * (first + second) / 2 - EPSILON)


@numba.njit(cache=True)
def _sorted_overlap(first: np.ndarray, second: np.ndarray) -> int:
    """Size of the intersection of two sorted arrays of distinct element ids."""
    i = j = common = 0
    while i < first.size and j < second.size:
        if first[i] == second[j]:
            common += 1
            i += 1
            j += 1
        elif first[i] < second[j]:
            i += 1
        else:
            j += 1
    return common


@numba.njit(cache=True)
def _lcs_length(first: np.ndarray, second: np.ndarray, row: np.ndarray) -> int:
    """Longest common subsequence of two token-id arrays, one DP row in ``row``."""
    n = second.size
    for j in range(n + 1):
        row[j] = 0
    for i in range(first.size):
        diagonal = 0
        token = first[i]
        for j in range(n):
            above = row[j + 1]
            if token == second[j]:
                row[j + 1] = diagonal + 1
            elif row[j] > above:
                row[j + 1] = row[j]
            diagonal = above
    return row[n]


@numba.njit(cache=True)
def rouge_l_fmeasure(common: int, first: int, second: int) -> float:
    """ROUGE-L F-measure from an LCS length, with rouge_score's exact floating-point operations.

    Compiled so that the kernel and Python callers share one formula.
    """
    if first == 0 or second == 0:
        return 0.0
    precision = common / second
    recall = common / first
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


# One flat function with flat array arguments is what numba compiles best.
@numba.njit(cache=True, nogil=True)
def join_slice(  # noqa: PLR0915, PLR0917
    first: int,
    step: int,
    threshold: float,
    offsets: np.ndarray,
    elements: np.ndarray,
    tokens: np.ndarray,
    posting_offsets: np.ndarray,
    posting_texts: np.ndarray,
    posting_positions: np.ndarray,
) -> np.ndarray:
    """Pairs ``(earlier, later)`` above the threshold, for the texts ``first, first+step, ...``.

    Returns an ``(k, 2)`` array of visiting numbers.
    """
    texts = offsets.size - 1
    lengths = offsets[1:] - offsets[:-1]
    count = np.zeros(texts, np.int32)  # 0 unseen, -1 pruned, k > 0 prefix matches
    last_here = np.zeros(texts, np.int32)
    last_there = np.zeros(texts, np.int32)
    touched = np.empty(texts, np.int32)
    row = np.zeros(int(lengths.max()) + 1 if texts else 1, np.int32)
    found = np.empty((64, 2), np.int64)
    pairs = 0
    t = threshold
    for text in range(first, texts, step):
        length = lengths[text]
        if length == 0:
            continue
        mine = elements[offsets[text] : offsets[text + 1]]
        least_overlap = max(1, math.ceil(t * length / (2 - t) - EPSILON))
        probe = length - least_overlap + 1
        shortest = max(1, math.ceil(length * t / (2 - t) - EPSILON))
        seen = 0
        for position in range(probe):
            # Partners first met here share at most `length - position` tokens.
            longest = length
            if t > 0:
                longest = min(length, math.floor(2 * (length - position) / t - length + EPSILON))
            element = mine[position]
            start = posting_offsets[element]
            stop = posting_offsets[element + 1]
            # Posting lists are in visiting order, so lengths never decrease along them.
            low, high = start, stop
            while low < high:
                middle = (low + high) // 2
                if lengths[posting_texts[middle]] < shortest:
                    low = middle + 1
                else:
                    high = middle
            for k in range(low, stop):
                other = posting_texts[k]
                if other >= text:
                    break
                state = count[other]
                if state < 0:
                    continue
                other_position = posting_positions[k]
                if state > 0:
                    count[other] = state + 1
                    last_here[other] = position
                    last_there[other] = other_position
                    continue
                touched[seen] = other
                seen += 1
                other_length = lengths[other]
                needed = _needed_overlap(t, length, other_length)
                left = min(length - position - 1, other_length - other_position - 1)
                if other_length <= longest and 1 + left >= needed:
                    count[other] = 1
                    last_here[other] = position
                    last_there[other] = other_position
                else:
                    count[other] = -1
        for index in range(seen):
            other = touched[index]
            matches = count[other]
            count[other] = 0
            if matches <= 0:
                continue
            other_length = lengths[other]
            needed = _needed_overlap(t, length, other_length)
            # Both prefixes are longer than needed; each extra slot forces one more match.
            least_there = max(1, math.ceil(t * other_length - EPSILON))
            if matches < min(needed - least_overlap, needed - least_there) + 1:
                continue
            tail = min(length - last_here[other] - 1, other_length - last_there[other] - 1)
            if matches + tail < needed:
                continue
            theirs = elements[offsets[other] : offsets[other + 1]]
            if _sorted_overlap(mine, theirs) < needed:
                continue
            common = _lcs_length(
                tokens[offsets[text] : offsets[text + 1]],
                tokens[offsets[other] : offsets[other + 1]],
                row,
            )
            if rouge_l_fmeasure(common, length, other_length) > t:
                if pairs == found.shape[0]:
                    grown = np.empty((2 * pairs, 2), np.int64)
                    grown[:pairs] = found
                    found = grown
                found[pairs, 0] = other
                found[pairs, 1] = text
                pairs += 1
    return found[:pairs].copy()
