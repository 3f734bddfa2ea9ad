"""Danish language detection for the merge jobs: an example that is not Danish is dropped.

Lingua alone is not enough. It confuses short Danish with Bokmål, Nynorsk, Swedish or German
(a five-word question is a coin toss between neighbours), and generated examples mix prose
with code, numbers, names, notations and translation tasks. So an example is judged as a
whole, each field as far as it can be judged:

* Only a field's language words are judged (:mod:`laerebogen.filtering.prose`): code, formulas,
  URLs, numbers, notations, identifiers, names and quoted terms are removed first. A field with
  fewer than ``MIN_WORDS`` language words left (a label, a name, a chess position, a table of
  figures, "1e6") is not judged at all.
* A field with at least ``ALONE_LETTERS`` letters of language words is judged alone, on its
  first and its last ``WINDOW`` characters when it is longer than two (so an answer that
  drifts into English is caught at its end): lingua must say Danish with at least
  ``min_confidence``, or Bokmål or Nynorsk while Danish words outnumber Norwegian ones more
  than two to one (lingua calls some plain Danish Bokmål with confidence 0.93). A long answer
  in Norwegian, Swedish or English under a Danish instruction is rejected on its own evidence.
* A shorter field is rejected at once when a neighbour's words win in it
  (:mod:`laerebogen.filtering.neighbours`: "hva", "ikkje", "är", "the"), or when lingua alone is
  sure of a neighbour: its share (Bokmål and Nynorsk together for Norwegian) at least ``SURE``,
  Danish at most ``SURE_MARGIN`` of it, at least ``SURE_WORDS`` words and no Danish word that
  the neighbour lacks. Otherwise, if lingua alone does not say Danish, the field is judged
  again together with the rest of the example (the other fields' words, up to ``CONTEXT``
  characters): Danish passes, and so does a neighbour whose words are not there while Danish
  words against it are, or Danish is within ``CLOSE_CALL`` of it.
* Translation tasks: an instruction that asks to translate ("oversæt") or names a target
  ("på engelsk", "det engelske udtryk") allows the named language in input and output; one
  that asks for Danish ("til dansk") leaves its input unjudged, as does a named language the
  detector does not know ("fransk").

The follow-up merge judges the added turns by the same rule (:meth:`LanguageFilter.judge_turns`):
each user message and each answer is a field, a user message's translation task applies to its
answer, and an answer is judged alone on its last window only, which keeps the largest merge's
cost bounded while every answer is still judged.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import msgspec
from lingua import ConfidenceValue, Language, LanguageDetector, LanguageDetectorBuilder

from laerebogen.filtering.neighbours import LINGUA_NEIGHBOUR, NEIGHBOUR_WORDS, tally
from laerebogen.filtering.prose import language_words, strip_non_prose

DANISH = Language.DANISH
NORWEGIAN = frozenset({Language.BOKMAL, Language.NYNORSK})
# The languages a Danish generator drifts into, plus the neighbours that a smaller set judges
# as Danish or Norwegian: Dutch and Icelandic (which also takes Faroese, unknown to lingua).
LANGUAGES = (
    DANISH,
    Language.BOKMAL,
    Language.NYNORSK,
    Language.SWEDISH,
    Language.ENGLISH,
    Language.GERMAN,
    Language.DUTCH,
    Language.ICELANDIC,
)
DEFAULT_MIN_CONFIDENCE = 0.25
MIN_WORDS = 2
ALONE_LETTERS = 60
CLOSE_CALL = 0.7
CONTEXT = 150
SURE = 0.65
SURE_WORDS = 3
SURE_MARGIN = 0.35
WINDOW = 200
_CHUNK = 2 * WINDOW  # characters read for a window of language words
_WORD = re.compile(r"[^\W\d_]+")

# Why these values, and what each one costs when changed: docs/decisions.md, "The Danish
# language filter's constants" (measured on tests/data/language).


@functools.cache
def language_detector() -> LanguageDetector:
    """The process-wide detector, built once with every language model preloaded."""
    return (
        LanguageDetectorBuilder.from_languages(*LANGUAGES).with_preloaded_language_models().build()
    )


# Translation tasks. A language name counts in its common forms: engelsk, engelske,
# engelsksprogede.
_JUDGED_NAMES: dict[str, frozenset[Language]] = {
    "engelsk": frozenset({Language.ENGLISH}),
    "norsk": NORWEGIAN,
    "bokmål": frozenset({Language.BOKMAL}),
    "nynorsk": frozenset({Language.NYNORSK}),
    "svensk": frozenset({Language.SWEDISH}),
    "tysk": frozenset({Language.GERMAN}),
    "hollandsk": frozenset({Language.DUTCH}),
    "nederlandsk": frozenset({Language.DUTCH}),
    "islandsk": frozenset({Language.ICELANDIC}),
}
# Languages the detector does not know: a field in one of them cannot be judged.
_UNJUDGED_NAMES = frozenset(
    "fransk spansk italiensk portugisisk polsk finsk estisk lettisk litauisk russisk ukrainsk "
    "græsk tyrkisk arabisk persisk kinesisk japansk koreansk latin færøsk grønlandsk ungarsk "
    "tjekkisk slovakisk rumænsk bulgarsk kroatisk serbisk".split()
)
_NAME_FORMS = {
    form: name
    for name in (*_JUDGED_NAMES, *_UNJUDGED_NAMES)
    for form in (name, f"{name}e", f"{name}t", f"{name}sprogede", f"{name}sproget")
}
_NAMES = "|".join(sorted(_NAME_FORMS, key=len, reverse=True))
_TARGET = re.compile(rf"\b(?:på|til)\s+(?:\w+\s+)?({_NAMES})\b")
_PHRASE = re.compile(
    rf"\b({_NAMES})\s+(?:udtryk|vending|ord|sætning|tekst|version|oversættelse|læsere"
    r"|talemåde|ordsprog|replik)"
)
_INTO_DANISH = re.compile(r"\b(?:på|til)\s+(?:\w+\s+)?dansk\b")


class _Task(msgspec.Struct, frozen=True):
    """What an instruction allows besides Danish in its input and output."""

    allowed: frozenset[Language] = frozenset()
    skip_input: bool = False
    skip_all: bool = False


_DANISH_TASK = _Task()


def _task(instruction: str) -> _Task:
    """Which foreign languages the instruction allows, and which fields cannot be judged."""
    lowered = instruction.lower()
    translate = "oversæt" in lowered
    named = [_NAME_FORMS[word] for word in _WORD.findall(lowered) if word in _NAME_FORMS]
    if not named and not translate and "dansk" not in lowered:
        return _DANISH_TASK
    if not translate:
        named = [_NAME_FORMS[f] for f in (*_TARGET.findall(lowered), *_PHRASE.findall(lowered))]
    if any(name in _UNJUDGED_NAMES for name in named):
        return _Task(skip_all=True)
    if named:
        return _Task(allowed=frozenset().union(*(_JUDGED_NAMES[name] for name in named)))
    return _Task(skip_input=translate or bool(_INTO_DANISH.search(lowered)))


class LanguageJudgement(msgspec.Struct, frozen=True):
    """Whether an example is Danish.

    ``confidence`` is the lowest confidence over the judged texts: Danish, or for a field a
    translation task allows in another language, that language's (1.0 when nothing was
    judged). ``reason`` is "" when Danish, else ``not_danish`` (another language is the most
    likely) or ``low_confidence`` (Danish is, but below the threshold). ``detail`` names the
    first failing field and what lingua saw, e.g. ``output: BOKMAL 0.91``, or the neighbour's
    words found in a short field, e.g. ``output: Swedish words är, och``.
    """

    danish: bool
    confidence: float
    reason: str = ""
    detail: str = ""


class _Field(msgspec.Struct, frozen=True):
    """One field of an example: its name, language words and the languages it may be in.

    Of a field longer than two chunks only the first and the last chunk are read (``head``
    and ``tail``): nothing between them is ever judged, so the cost of a field is bounded.
    """

    name: str
    head: list[str]
    tail: list[str] = []
    allowed: frozenset[Language] = frozenset()
    end_only: bool = False  # judged alone on its last window only

    @property
    def words(self) -> list[str]:
        return self.head + self.tail

    @property
    def letters(self) -> int:
        return sum(map(len, self.head)) + sum(map(len, self.tail))


class _Text(msgspec.Struct, frozen=True):
    """One text for lingua: a window of a long field, a short field alone, or a short field
    with the rest of its example as context (``kind`` "long", "short" or "context")."""

    example: int
    field: str
    text: str
    allowed: frozenset[Language]
    kind: str


def _field(
    name: str, text: str, allowed: frozenset[Language] = frozenset(), end_only: bool = False
) -> _Field:
    # A field judged on its end needs of its start only what context short fields may take.
    head_size = 2 * CONTEXT if end_only else _CHUNK
    if len(text) <= head_size + _CHUNK:
        return _Field(name, language_words(strip_non_prose(text)), [], allowed, end_only)
    head, tail = text[:head_size], text[-_CHUNK:]
    head, tail = head[: head.rfind(" ")], tail[tail.find(" ") + 1 :]  # no cut words
    for fence in ("```", "~~~"):  # a tail that starts inside a code block is code
        if text.count(fence, 0, len(text) - len(tail)) % 2:
            tail = f"{fence}\n{tail}"
    words = language_words(strip_non_prose(head))
    return _Field(name, words, language_words(strip_non_prose(tail)), allowed, end_only)


def _triple_fields(instruction: str, input: str, output: str) -> list[_Field]:
    """The fields of an (instruction, input, output) example that are to be judged."""
    task = _task(instruction)
    fields = [_field("instruction", instruction)]
    if not task.skip_all and not task.skip_input:
        fields.append(_field("input", input, task.allowed))
    if not task.skip_all:
        fields.append(_field("output", output, task.allowed))
    return fields


def _turn_fields(turns: Sequence[tuple[str, str]], first: int) -> list[_Field]:
    """The fields of conversation turns (user message, answer), numbered from ``first``."""
    fields = []
    for number, (user, answer) in enumerate(turns, start=first):
        task = _task(user)
        fields.append(_field(f"turn {number} user", user))
        if not task.skip_all:
            fields.append(_field(f"turn {number} answer", answer, task.allowed, end_only=True))
    return fields


def _window(words: list[str], limit: int = WINDOW, start: bool = True) -> str:
    """At most ``limit`` characters of whole words from the start or the end of ``words``."""
    chosen: list[str] = []
    size = 0
    for word in words if start else reversed(words):
        size += len(word) + 1
        if size > limit + 1:
            break
        chosen.append(word)
    return " ".join(chosen if start else reversed(chosen))


def _long_texts(index: int, field: _Field) -> list[_Text]:
    """A long field's windows: its end, or its start and its end, or all of it."""
    head, tail = field.head or field.tail, field.tail or field.head
    if field.end_only:
        parts = [("end", _window(tail, start=False))]
    elif field.tail or field.letters + len(field.head) > 2 * WINDOW:
        parts = [("start", _window(head)), ("end", _window(tail, start=False))]
    else:
        return [_Text(index, field.name, " ".join(field.head), field.allowed, "long")]
    return [
        _Text(index, f"{field.name} ({part})", text, field.allowed, "long") for part, text in parts
    ]


def _with_context(text: _Text, fields: list[_Field]) -> _Text:
    """A short field's text followed by the words of the other fields, up to :data:`CONTEXT`
    characters: the short fields' first, then the start of the long ones."""
    words = text.text.split()
    size = len(text.text)
    others = sorted(fields, key=lambda field: field.letters >= ALONE_LETTERS)
    for word in (word for field in others if field.name != text.field for word in field.words):
        if size >= CONTEXT:
            break
        words.append(word)
        size += len(word) + 1
    return _Text(
        text.example, f"{text.field} (in context)", " ".join(words), text.allowed, "context"
    )


class _Outcomes:
    """What a batch's texts decided: each example's lowest confidence and first failure."""

    def __init__(self, examples: int) -> None:
        self.lowest = [1.0] * examples
        self.failures: dict[int, tuple[str, str]] = {}

    def fail(self, example: int, reason: str, detail: str, confidence: float) -> None:
        self.lowest[example] = min(self.lowest[example], confidence)
        self.failures.setdefault(example, (reason, detail))

    def record(
        self, text: _Text, values: list[ConfidenceValue], verdict: tuple[float, str]
    ) -> None:
        confidence, reason = verdict
        if reason:
            top = values[0]
            self.fail(
                text.example,
                reason,
                f"{text.field}: {top.language.name} {top.value:.2f}",
                confidence,
            )
        else:
            self.lowest[text.example] = min(self.lowest[text.example], confidence)

    def judgements(self) -> list[LanguageJudgement]:
        return [
            LanguageJudgement(False, lowest, *self.failures[index])
            if index in self.failures
            else LanguageJudgement(True, lowest)
            for index, lowest in enumerate(self.lowest)
        ]


class LanguageFilter:
    """Judges batches of examples with lingua's parallel API."""

    def __init__(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> None:
        self.min_confidence = min_confidence
        self.detector = language_detector()  # shared by every filter in the process

    def judge(self, examples: Sequence[tuple[str, str, str]]) -> list[LanguageJudgement]:
        """One judgement per (instruction, input, output) triple, in order."""
        return self._judge([_triple_fields(*example) for example in examples])

    def judge_turns(
        self, conversations: Sequence[Sequence[tuple[str, str]]], first: int = 1
    ) -> list[LanguageJudgement]:
        """One judgement per conversation of (user message, answer) turns, in order; fields
        are named by turn number, counted from ``first``."""
        return self._judge([_turn_fields(turns, first) for turns in conversations])

    def _judge(self, examples: list[list[_Field]]) -> list[LanguageJudgement]:
        """Two parallel lingua calls for the whole batch: every long field's windows and every
        short field alone, then, with context, the short fields lingua could not place."""
        outcomes = _Outcomes(len(examples))
        judged = [[f for f in fields if len(f.words) >= MIN_WORDS] for fields in examples]
        texts: list[_Text] = []
        for index, fields in enumerate(judged):
            for field in fields:
                if field.letters >= ALONE_LETTERS:
                    texts.extend(_long_texts(index, field))
                    continue
                found = tally(field.words)
                if language := found.winner(field.allowed):
                    # A neighbour's words decide: there is no Danish confidence to speak of.
                    words = ", ".join(list(dict.fromkeys(found.neighbour[language]))[:3])
                    outcomes.fail(
                        index, "not_danish", f"{field.name}: {language} words {words}", 0.0
                    )
                    continue
                texts.append(
                    _Text(index, field.name, " ".join(field.words), field.allowed, "short")
                )
        retry = []
        for text, values in zip(texts, self._detect(texts), strict=True):
            verdict = self._verdict(text, values)
            if verdict[1] == "undecided":
                retry.append(_with_context(text, judged[text.example]))
            else:
                outcomes.record(text, values, verdict)
        for text, values in zip(retry, self._detect(retry), strict=True):
            outcomes.record(text, values, self._verdict(text, values))
        return outcomes.judgements()

    def _detect(self, texts: list[_Text]) -> list[list[ConfidenceValue]]:
        """Lingua's confidence values for each text, from one parallel call."""
        if not texts:
            return []
        return self.detector.compute_language_confidence_values_in_parallel(
            [text.text for text in texts]
        )

    def _verdict(self, text: _Text, values: list[ConfidenceValue]) -> tuple[float, str]:
        """The text's confidence in its accepted language, and a reason code if it fails:
        ``not_danish``, ``low_confidence``, or for a short field alone ``undecided``."""
        top = values[0]
        threshold = self.min_confidence if text.kind == "long" else 0.0
        if top.language == DANISH:
            return top.value, "" if top.value >= threshold else "low_confidence"
        if top.language in text.allowed and top.value >= threshold:
            return top.value, ""
        danish = next((value.value for value in values if value.language == DANISH), 0.0)
        neighbour = LINGUA_NEIGHBOUR[top.language]
        found = tally(text.text.split())
        if text.kind == "long":
            # Lingua calls some plain Danish Bokmål; the Danish words must then win.
            norwegian_danish = neighbour == "Norwegian" and found.danish_wins(neighbour)
            return danish, "" if norwegian_danish else "not_danish"
        # Lingua splits a neighbour's share between its languages (Bokmål and Nynorsk).
        share = sum(v.value for v in values if LINGUA_NEIGHBOUR.get(v.language) == neighbour)
        if text.kind == "short":
            sure = (
                neighbour in NEIGHBOUR_WORDS
                and share >= SURE
                and danish <= SURE_MARGIN * share
                and len(text.text.split()) >= SURE_WORDS
                and not found.danish[neighbour]
            )
            return danish, "not_danish" if sure else "undecided"
        # With context: lingua's neighbour must be borne out by its words, or win clearly over
        # Danish without a Danish word against it.
        if found.winner(text.allowed) is None and (
            found.danish[neighbour] > 0 or danish >= CLOSE_CALL * top.value
        ):
            return danish, ""
        return danish, "not_danish"
