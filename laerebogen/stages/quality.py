"""Quality judgement: the model keeps good examples and rewrites or drops poor ones.

Self-instruct output holds unclear tasks, wrong or half answers and clumsy Danish that no
heuristic filter sees. The instruction-tuned model reads one example at a time (its text
only, as a JSON object) and answers with a verdict, a one-sentence reason and, for a poor
example, a better version of it. A poor example is replaced by its rewrite when there is
one, and dropped when there is not. The verdict goes into ``scores["quality_good"]``.
"""

from __future__ import annotations

import msgspec

from laerebogen.config.schema import Quality
from laerebogen.inference.requests import Constraint
from laerebogen.records import Example, Rejection
from laerebogen.stages.core import Context, Outcome, Stage, Work
from laerebogen.stages.text import json_object, json_string
from laerebogen.stages.triples import (
    KEYS,
    Triple,
    kept,
    one_line,
    read_reply,
    triple_from,
    triple_members,
    triple_request,
)

VERDICTS = {"god": 1.0, "dårlig": 0.0}
SCORE = "quality_good"
# The reply's keys and punctuation take about this many tokens; its strings get the rest of
# max_tokens at this many characters per token. Real tokenizers write 3 to 4 characters of
# Danish per token, so 2 leaves room for escapes and code, and the noise of a random model
# mostly ends too.
SYNTAX_TOKENS = 32
CHARS_PER_TOKEN = 2


def rewrite_limits(max_tokens: int) -> dict[str, int]:
    """The bound of each string of the reply: the reason is a sentence, the output gets most."""
    budget = max(max_tokens - SYNTAX_TOKENS, 0) * CHARS_PER_TOKEN
    return {
        "begrundelse": budget // 8,
        "instruktion": budget // 4,
        "input": budget // 4,
        "output": budget * 3 // 8,
    }


def verdict_regex(limits: dict[str, int] | None) -> str:
    """The reply as a regex: a good verdict leaves the rewrite empty, a poor one may fill it.
    Strings are bounded by ``limits`` (for a model that never stops), else free."""
    reason = ("begrundelse", json_string(limits["begrundelse"] if limits else None))
    good = json_object([("vurdering", '"god"'), reason, *((key, '""') for key in KEYS)])
    poor = json_object([("vurdering", '"dårlig"'), reason, *triple_members(limits)])
    return f"(?:{good}|{poor})"


def usable(rewrite: Triple, original: Triple) -> bool:
    """Whether a rewrite can replace a poor example: it has a task and an answer, and differs."""
    return bool(rewrite.instruction and rewrite.output) and rewrite != original


class QualityStage(Stage):
    """Judges each example in one chat request; keeps, rewrites or drops it.

    A good example is kept (note ``good``), a poor one is replaced by its rewrite under the
    same id (note ``improved: <reason>``) or dropped with the rejection ``poor_quality``. A
    reply that cannot be used keeps the example unjudged (note ``unjudged``) with a rejection
    that says why: ``invalid_verdict``, ``prompt_too_long``, ``truncated``, ``too_long``,
    ``aborted`` or a code of :func:`~laerebogen.stages.text.parse_json_object`.
    """

    name = "quality"

    def __init__(self, settings: Quality) -> None:
        self.settings = settings
        bounded = settings.constrained and settings.bounded
        limits = rewrite_limits(settings.sampling.max_tokens) if bounded else None
        constraint = Constraint(regex=verdict_regex(limits))
        self.constraint = constraint if settings.constrained else None
        # A rewrite that fills its bound was cut; a reason cut short is still a reason.
        self.limits = {key: limits[key] for key in KEYS} if limits else None

    def process(self, record: Example, context: Context) -> Work:
        request = triple_request(
            self.name,
            record,
            context,
            call="judge",
            sampling=self.settings.sampling,
            constraint=self.constraint,
        )
        result = yield request
        unjudged = context.step(self.name, request.seed, "unjudged")
        reply = read_reply(result, record.id, {"vurdering": str}, self.limits)
        if isinstance(reply, Rejection):
            return kept(record, unjudged, reply)
        verdict = str(reply["vurdering"]).strip().casefold()
        if verdict not in VERDICTS:
            detail = f"vurdering {one_line(verdict)!r}"
            invalid = Rejection("invalid_verdict", record.id, detail, raw=result.text)
            return kept(record, unjudged, invalid)
        judged = msgspec.structs.replace(record, scores={**record.scores, SCORE: VERDICTS[verdict]})
        reason = one_line(reply.get("begrundelse"))
        if verdict == "god":
            step = context.step(self.name, request.seed, "good")
            return Outcome(records=(judged.with_step(step),))
        rewrite = triple_from(reply)
        if rewrite is None or not usable(rewrite, Triple.of(record)):
            detail = reason or "judged poor without a usable rewrite"
            poor = Rejection("poor_quality", record.id, detail, record=judged)
            return Outcome(rejections=(poor,))
        note = f"improved: {reason}" if reason else "improved"
        step = context.step(self.name, request.seed, note)
        return Outcome(records=(rewrite.apply(judged).with_step(step),))
