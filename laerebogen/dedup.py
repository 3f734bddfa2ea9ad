"""Exact global ROUGE-L deduplication on Danish word tokens.

``rouge_score``'s default tokenizer keeps only ``[a-z0-9]``, so "sætning" becomes "s" and
"tning" and Danish near-duplicates are judged on fragments. Here a token is a lowercased
run of Unicode letters and digits (æ, ø, å and accented letters included).

Pairwise ROUGE-L grows with n²; this module makes the same decisions as brute force with
``rouge_score`` while comparing only pairs that could exceed the threshold. ROUGE-L's
F-measure is ``2·L/(m+n)`` (``L`` the LCS length, ``m``, ``n`` the lengths), and ``L`` is at
most the multiset token overlap, so a pair needs an overlap above ``t·(m+n)/2``. That gives
three exact filters before any LCS is computed:

* length: ``min(m, n) > t·(m+n)/2`` bounds the partner's length;
* prefix: with tokens ordered by rarity, two texts that overlap enough must share a token
  among their first ``m - o + 1`` (the standard prefix-filtering argument), so only the
  rare prefixes go into an inverted index and only they are probed;
* position: a candidate whose matches so far plus the tokens left on either side cannot
  reach the needed overlap is dropped (PPJoin-style).

Surviving pairs get a bit-parallel LCS (rapidfuzz) on token ids encoded as characters, and
the final decision uses rouge_score's own floating-point formula. Every bound is loosened
by a tiny epsilon, so rounding can only let more pairs through to the exact check.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from rapidfuzz.distance import LCSseq

_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lowercased Unicode word tokens (letters and digits); punctuation is dropped."""
    return _WORD.findall(text.lower())


_EPSILON = 1e-9
_FIRST_PRIVATE_USE = 0xE000  # token ids become characters; skip the surrogate range


def _token_char(token_id: int) -> str:
    code = token_id if token_id < 0xD800 else token_id + (_FIRST_PRIVATE_USE - 0xD800)
    return chr(code)


def rouge_l_fmeasure(common: int, first_length: int, second_length: int) -> float:
    """ROUGE-L F-measure from an LCS length, computed exactly as ``rouge_score`` does."""
    if not first_length or not second_length:
        return 0.0
    precision = common / second_length
    recall = common / first_length
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(first: str, second: str) -> float:
    """ROUGE-L F-measure of two texts under :func:`tokenize`."""
    first_tokens, second_tokens = tokenize(first), tokenize(second)
    common = LCSseq.similarity(first_tokens, second_tokens)
    return rouge_l_fmeasure(common, len(first_tokens), len(second_tokens))


class _Vocabulary:
    """Maps tokens to single characters and counts in how many texts each token occurs."""

    def __init__(self) -> None:
        self._chars: dict[str, str] = {}
        self.document_frequency: dict[str, int] = {}

    def encode(self, text: str) -> str:
        chars = self._chars
        encoded = []
        for token in tokenize(text):
            char = chars.get(token)
            if char is None:
                char = chars[token] = _token_char(len(chars))
            encoded.append(char)
        frequency = self.document_frequency
        for char in set(encoded):
            frequency[char] = frequency.get(char, 0) + 1
        return "".join(encoded)

    def rarity_rank(self) -> dict[str, int]:
        """Rank 0 for the rarest token; ties broken by first appearance."""
        order = sorted(
            self.document_frequency, key=lambda char: (self.document_frequency[char], char)
        )
        return {char: rank for rank, char in enumerate(order)}


class _SimilarityJoin:
    """Finds every pair above the threshold, visiting texts from shortest to longest.

    Visiting by length means every indexed text is at most as long as the one probing, so
    the indexed prefixes only need to cover partners at least as long (overlap above
    ``t·m``), which keeps the posting lists short; and each posting list is sorted by
    length, so too-short partners are skipped by bisection.
    """

    def __init__(self, threshold: float, rank: dict[str, int]) -> None:
        self.threshold = threshold
        self.rank = rank

    def _ordered_elements(self, text: str) -> list[tuple[str, int]]:
        """Token occurrences ``(token, k-th occurrence)`` from rarest to most common."""
        seen: dict[str, int] = {}
        elements = []
        for char in text:
            occurrence = seen.get(char, 0)
            seen[char] = occurrence + 1
            elements.append((char, occurrence))
        rank = self.rank
        elements.sort(key=lambda element: (rank[element[0]], element[1]))
        return elements

    def pairs(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """Yield ``(i, j)`` for every pair of ``texts`` with ROUGE-L above the threshold."""
        t = self.threshold
        postings: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        for number in sorted(range(len(texts)), key=lambda k: len(texts[k])):
            text = texts[number]
            length = len(text)
            if length == 0:
                continue
            elements = self._ordered_elements(text)
            # Partners are at most as long: overlap must exceed t·length/(2-t).
            probe = length - max(1, math.ceil(t * length / (2 - t) - _EPSILON)) + 1
            shortest = max(1, math.ceil(length * t / (2 - t) - _EPSILON))
            matches: dict[int, int] = {}
            for position, element in enumerate(elements[:probe]):
                # A partner first met here has at most `length - position` common tokens.
                longest = length
                if t > 0:
                    longest = min(
                        longest, math.floor(2 * (length - position) / t - length + _EPSILON)
                    )
                if longest < shortest:
                    break
                entries = postings.get(element)
                if not entries:
                    continue
                left_here = length - position - 1
                start = bisect_left(entries, (shortest,))
                for k in range(start, bisect_left(entries, (longest + 1,), start)):
                    other_length, other_position, other = entries[k]
                    if other in matches:
                        continue
                    needed = math.ceil(t * (length + other_length) / 2 - _EPSILON)
                    if 1 + min(left_here, other_length - other_position - 1) >= needed:
                        matches[other] = 1
            for other in matches:
                other_text = texts[other]
                common = LCSseq.similarity(text, other_text)
                if rouge_l_fmeasure(common, length, len(other_text)) > t:
                    yield other, number
            # Later partners are at least as long: overlap must exceed t·length.
            indexed = length - max(1, math.ceil(t * length - _EPSILON)) + 1
            for position, element in enumerate(elements[:indexed]):
                postings.setdefault(element, []).append((length, position, number))


def rouge_l_dedup(
    texts: Sequence[str], threshold: float = 0.7, existing: Iterable[str] = ()
) -> list[int]:
    """Indices of ``texts`` to keep, in order.

    Text ``i`` is kept iff its ROUGE-L F-measure with every earlier kept text and with every
    text of ``existing`` is at most ``threshold``: the decisions of brute force with
    ``rouge_score`` and this module's tokenizer, without comparing every pair.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    vocabulary = _Vocabulary()
    pool = [vocabulary.encode(text) for text in existing]
    encoded = [vocabulary.encode(text) for text in texts]
    if threshold >= 1.0:
        return list(range(len(encoded)))
    offset = len(pool)
    join = _SimilarityJoin(threshold, vocabulary.rarity_rank())
    similar: dict[int, list[int]] = {}
    rejected_by_pool: set[int] = set()
    for first, second in join.pairs(pool + encoded):
        low, high = sorted((first, second))
        if high < offset:
            continue  # two pool texts
        if low < offset:
            rejected_by_pool.add(high - offset)
        else:
            similar.setdefault(high - offset, []).append(low - offset)
    kept_flags = [False] * len(encoded)
    for position in range(len(encoded)):
        if position in rejected_by_pool:
            continue
        if not any(kept_flags[earlier] for earlier in similar.get(position, ())):
            kept_flags[position] = True
    return [position for position, keep in enumerate(kept_flags) if keep]


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
