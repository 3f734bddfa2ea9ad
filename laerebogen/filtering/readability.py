"""Readability and length of conversations: the scores behind the export's filtered version.

Readability is LIX (Björnsson's *läsbarhetsindex*), the index used for Danish, Swedish and
Norwegian: Flesch counts syllables with weights fitted to English, LIX only counts words,
sentences and long words, which works for any language with Danish-style compounds::

    LIX = words / sentences + 100 * long words / words

The usual Danish scale: under 25 very easy (children's books), 25-34 easy (weeklies,
fiction), 35-44 medium (newspapers), 45-54 hard (non-fiction), 55 and over very hard
(academic and legal text).

Counting, as for Danish LIX:

* a *word* is a run of letters and digits, parts joined by a hyphen or apostrophe included
  ("EU-landene" is one word), with at least one letter: numbers, amounts and list numbering
  ("1.") are not words;
* a *long word* has more than 6 letters (letters only: "EU-landene" has 9);
* a *sentence* ends at a run of ``. ! ? :`` followed by a space, a closing quote, bracket or
  markup, or the end of the text (so "3.5", "10:30" and URLs do not end one), and at every line
  break: headings and list items have no full stop but are units of their own. An end counts
  only after a word, so "...", blank lines and "1." add nothing, and text that stops without
  punctuation still ends a sentence. Abbreviations such as "f.eks." end a sentence too, as in
  any counter without an abbreviation list; the export's bounds are wide enough for that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from laerebogen.records import LANGUAGE_SCORE, Example

SCORES = ("lix", "user_words", "assistant_words", "turns", LANGUAGE_SCORE)
"""The names :func:`conversation_scores` gives (the language score only when the record has it)."""
LONG_WORD_LETTERS = 6  # a long word has more letters than this
LIX_DIGITS = 2  # LIX is read as a whole number; two decimals keep ties apart

_TOKEN = re.compile(
    r"(?P<word>[^\W_]+(?:[-'’][^\W_]+)*)"  # letters/digits, hyphen- or apostrophe-joined
    r"|(?P<end>[.!?:]+(?=[\s\"'”’»)\]*_]|$))"  # sentence punctuation before a break
    r"|(?P<line>\n)"
)


@dataclass(frozen=True, slots=True)
class TextCounts:
    """What LIX is computed from; counts of several texts add up."""

    words: int = 0
    sentences: int = 0
    long_words: int = 0

    def __add__(self, other: TextCounts) -> TextCounts:
        return TextCounts(
            self.words + other.words,
            self.sentences + other.sentences,
            self.long_words + other.long_words,
        )

    @property
    def lix(self) -> float:
        """The LIX of the counted text; 0.0 for text without words."""
        if not self.words:
            return 0.0
        return self.words / self.sentences + 100 * self.long_words / self.words


def count_text(text: str) -> TextCounts:
    """Words, sentences and long words of ``text`` (see the module docstring for the rules)."""
    words = sentences = long_words = 0
    in_sentence = False  # a word since the last sentence end
    for match in _TOKEN.finditer(text):
        if match.lastgroup == "word":
            word = match.group()
            # Most words are letters only: their length, without a character loop.
            letters = len(word) if word.isalpha() else sum(char.isalpha() for char in word)
            if letters:
                words += 1
                long_words += letters > LONG_WORD_LETTERS
                in_sentence = True
        elif in_sentence:
            sentences += 1
            in_sentence = False
    return TextCounts(words, sentences + in_sentence, long_words)


def count_texts(texts: Iterable[str]) -> TextCounts:
    """The counts of several texts together; each text ends its last sentence."""
    return sum(map(count_text, texts), TextCounts())


def lix(text: str) -> float:
    """The LIX of ``text``, unrounded; 0.0 for empty text or text without words."""
    return count_text(text).lix


def word_count(text: str) -> int:
    """The number of words of ``text``, as LIX counts them."""
    return count_text(text).words


def conversation_scores(example: Example) -> dict[str, float]:
    """Readability, lengths, turns and Danish confidence of one conversation.

    ``lix`` is of the assistant's messages together (the part a model is trained to write);
    ``user_words`` and ``assistant_words`` are totals over the conversation; ``turns`` counts
    the user's messages; ``danish_confidence`` is the merge's score, when the record has one
    (after follow-ups it is the confidence of the added turns).
    """
    messages = example.conversation()
    assistant = count_texts(m.content for m in messages if m.role == "assistant")
    user = count_texts(m.content for m in messages if m.role == "user")
    scores: dict[str, float] = {
        "lix": round(assistant.lix, LIX_DIGITS),
        "user_words": user.words,
        "assistant_words": assistant.words,
        "turns": sum(message.role == "user" for message in messages),
    }
    if LANGUAGE_SCORE in example.scores:
        scores[LANGUAGE_SCORE] = example.scores[LANGUAGE_SCORE]
    return scores
