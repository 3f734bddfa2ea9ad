"""Grammar correction: the model fixes spelling, grammar and punctuation, nothing else.

Generated Danish has typos, agreement errors and English-style commas; a dataset that teaches
them teaches them to every model trained on it. The instruction-tuned model gets one example
at a time as a JSON object and answers with the corrected object. A correction must stay a
correction: when any field moves further from its original than ``min_similarity``
(ROUGE-L), the model rewrote, answered or translated instead, and the original is kept.
Every input gives exactly one record with the same id; rejections count only what was not
applied.
"""

from __future__ import annotations

from laerebogen.config.schema import Grammar
from laerebogen.inference.requests import Constraint
from laerebogen.records import Example, Rejection
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.text import json_object
from laerebogen.stages.triples import (
    KEYS,
    TRIPLE_FIELDS,
    Triple,
    kept,
    read_reply,
    triple_from,
    triple_members,
    triple_request,
)

# Room a correction gets beyond its original's length: a quarter more, plus a few characters
# for short fields. An empty field stays empty.
SLACK_CHARS = 20


def correction_limits(original: Triple) -> dict[str, int]:
    """The bound of each corrected field: about its original's length, 0 for an empty one."""
    return {
        key: len(text) + len(text) // 4 + SLACK_CHARS if text else 0
        for key, text in zip(KEYS, original, strict=True)
    }


def similarity(original: str, corrected: str) -> float:
    """ROUGE-L of a field and its correction. Two texts without words differ in punctuation
    only, which a correction may change; an emptied or filled-in field is a rewrite."""
    from laerebogen.filtering.dedup import rouge_l, tokenize

    if original == corrected or not (tokenize(original) or tokenize(corrected)):
        return 1.0 if bool(original) == bool(corrected) else 0.0
    return rouge_l(original, corrected)


def rewritten(original: Triple, corrected: Triple, min_similarity: float) -> str | None:
    """Why ``corrected`` is a rewrite rather than a correction (its first such field), or None."""
    for key, before, after in zip(KEYS, original, corrected, strict=True):
        score = similarity(before, after)
        if score < min_similarity:
            return f"{key}: ROUGE-L {score:.2f} < {min_similarity:.2f}"
    return None


def _constraint(limits: dict[str, int] | None) -> Constraint:
    """The corrected triple as a JSON object, its strings within ``limits`` when given."""
    return Constraint(regex=json_object(triple_members(limits)))


class GrammarStage(Stage):
    """Corrects each example's instruction, input and output in one chat request.

    Each record comes out once, with a step noted ``corrected`` or ``unchanged``. Rejections:
    ``rewrite`` (the candidate moved too far from the original), ``prompt_too_long``,
    ``truncated``, ``too_long``, ``aborted`` and the unreadable-JSON codes of
    :func:`~laerebogen.stages.text.parse_json_object` (``invalid_json``, ...).
    """

    name = "grammar"

    def __init__(self, settings: Grammar) -> None:
        self.settings = settings
        # Unbounded, one expression serves every request; bounded, each gets its own.
        self.shared = _constraint(None) if settings.constrained and not settings.bounded else None

    def process(self, record: Example, context: Context) -> Work:
        original = Triple.of(record)
        # A correction that outgrows these ran on: checked on every reply, and also enforced
        # while decoding when bounded.
        limits = correction_limits(original)
        constraint = self.shared
        if self.settings.constrained and self.settings.bounded:
            constraint = _constraint(limits)
        request = triple_request(
            self.name,
            record,
            context,
            call="correct",
            sampling=self.settings.sampling,
            constraint=constraint,
        )
        result = yield request
        unchanged = context.step(self.name, request.seed, "unchanged")
        reply = read_reply(result, record.id, TRIPLE_FIELDS, limits)
        if isinstance(reply, Rejection):
            return kept(record, unchanged, reply)
        corrected = triple_from(reply)
        assert corrected is not None  # read_reply checked that every field is text
        candidate = corrected.apply(record)
        if why := rewritten(original, corrected, self.settings.min_similarity):
            return kept(record, unchanged, Rejection("rewrite", record.id, why, record=candidate))
        note = "unchanged" if corrected == original else "corrected"
        return Outcome(records=(candidate.with_step(context.step(self.name, request.seed, note)),))
