"""Checks of the model's answers that several stages share: refusals, unfinished calls and
messages too short to be one."""

from __future__ import annotations

import re

from laerebogen.inference.requests import Result
from laerebogen.stages.text import shorten

# A refusal is short; a long answer that apologises once is still an answer.
REFUSAL_MAX_WORDS = 80
# Refusals in Danish and English. "Beklager" only opens a refusal or goes with "men": an
# answer that writes an apology ("Vi beklager forsinkelsen") is not refusing. "Jeg kan ikke"
# only with a verb of helping or answering, so that a translated "Jeg kan ikke svømme" passes.
_REFUSAL = re.compile(
    r"^\W*(?:jeg[ \t]+)?beklager\b|\bbeklager,?\s+men\b"
    r"|\b(?:jeg\s+(?:kan|må)|det\s+kan\s+jeg)\s+(?:desværre\s+)?ikke\s+(?:hjælpe|svare|besvare"
    r"|løse|udføre|opfylde|give|skrive|lave|generere|se|åbne|læse|tilgå|finde|browse|vise)\b"
    r"|\bjeg\s+er\s+(?:desværre\s+)?ikke\s+i\s+stand\s+til\b"
    r"|\bjeg\s+har\s+(?:desværre\s+)?ikke\s+adgang\s+til\b"
    r"|\bsom\s+(?:en\s+)?(?:ai|ai-model|ai-assistent|sprogmodel|kunstig\s+intelligens)\b"
    r"|\bi(?:['’]m|\s+am)\s+(?:sorry|unable\s+to|not\s+able\s+to)\b"
    r"|\bas\s+an?\s+(?:ai|language\s+model)\b"
    r"|\bi\s+(?:cannot|can['’]t|can\s+not|won['’]t)\s+(?:help|assist|answer|provide|comply"
    r"|fulfil|fulfill)\b",
    re.IGNORECASE,
)
# The rejection reason of a call that did not end by itself.
# A word of a written message: two letters or more (digits and punctuation are not words).
_WORD = re.compile(r"[^\W\d_]{2,}")
UNFINISHED = {"rejected": "prompt_too_long", "length": "truncated", "abort": "aborted"}


def refusal_phrase(answer: str) -> str | None:
    """The refusal phrase of a short answer that refuses its task, else None."""
    if len(answer.split()) >= REFUSAL_MAX_WORDS:
        return None
    match = _REFUSAL.search(answer)
    return match[0].strip() if match else None


def unfinished(result: Result) -> tuple[str, str] | None:
    """The rejection reason and detail of a call that did not end by itself, else None."""
    reason = UNFINISHED.get(result.finish_reason)
    if reason is None:
        return None
    return reason, result.detail or f"finish_reason {result.finish_reason}"


def too_few_words(message: str, least: int) -> str | None:
    """Why ``message`` is too short to be one (fewer than ``least`` words), or None."""
    if (words := len(_WORD.findall(message))) < least:
        return f"{words} words in {shorten(message, 40)!r}, at least {least} needed"
    return None
