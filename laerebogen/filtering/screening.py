"""Screening of examples: the heuristic filters, then Danish language detection.

The merge job and the stand-alone ``filter`` command both use this, so a record rejected in a
run is rejected for the same reason when a user re-checks an export by hand. Heuristics run
first because they are about a hundred times cheaper than language detection.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from laerebogen.config.schema import Filters
from laerebogen.filtering.heuristics import HeuristicFilter, Verdict
from laerebogen.filtering.language import LanguageFilter

Triple = tuple[str, str, str]


class Screening(msgspec.Struct, frozen=True):
    """The outcome for one example: a rejection (or None) and its Danish confidence."""

    rejection: Verdict | None
    language_confidence: float | None = None


class Screener:
    """Applies both filters to batches; build one per process (the detector is shared)."""

    def __init__(self, filters: Filters | None = None, min_confidence: float | None = None):
        filters = filters or Filters()
        self.heuristics = HeuristicFilter(filters.banned_words, filters.max_input_words)
        self.language = (
            LanguageFilter() if min_confidence is None else LanguageFilter(min_confidence)
        )

    def screen(self, examples: Sequence[Triple]) -> list[Screening]:
        """One :class:`Screening` per example, in order."""
        verdicts = [self.heuristics.check(*example) for example in examples]
        survivors = [index for index, verdict in enumerate(verdicts) if verdict is None]
        judgements = self.language.judge([examples[index] for index in survivors])
        results = [Screening(verdict) for verdict in verdicts]
        for index, judgement in zip(survivors, judgements, strict=True):
            rejection = None if judgement.danish else Verdict(judgement.reason, judgement.detail)
            results[index] = Screening(rejection, judgement.confidence)
        return results
