"""ROUGE-L similarity on Danish word tokens.

``rouge_score``'s default tokenizer keeps only ``[a-z0-9]``, so "sætning" becomes "s" and
"tning" and Danish near-duplicates are judged on fragments. Here a token is a lowercased
run of Unicode letters and digits (æ, ø, å and accented letters included).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lowercased Unicode word tokens (letters and digits); punctuation is dropped."""
    return _WORD.findall(text.lower())


def lcs_length(first: list[str], second: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(first) < len(second):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[-1]))
        previous = current
    return previous[-1]


def rouge_l(first: list[str], second: list[str]) -> float:
    """ROUGE-L F-measure of two token lists (0.0 when either is empty)."""
    if not first or not second:
        return 0.0
    common = lcs_length(first, second)
    if common == 0:
        return 0.0
    precision, recall = common / len(second), common / len(first)
    return 2 * precision * recall / (precision + recall)


def near_duplicate_pairs(texts: list[str], threshold: float = 0.7) -> list[tuple[int, int, float]]:
    """Every pair ``(i, j, score)`` with ``i < j`` whose ROUGE-L exceeds ``threshold``."""
    tokens = [tokenize(text) for text in texts]
    pairs = []
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens)):
            score = rouge_l(tokens[i], tokens[j])
            if score > threshold:
                pairs.append((i, j, score))
    return pairs
