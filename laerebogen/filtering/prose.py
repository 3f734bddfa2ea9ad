"""What in a text carries a language: prose without code, formulas, notations and names.

Language detection judges what people write in a language, so everything else is removed first:

* :func:`strip_non_prose` drops code blocks, inline code, unfenced code lines and error
  messages, LaTeX, formula lines, URLs and e-mail addresses;
* :func:`language_words` keeps, of what is left, the words that say which language a text is in.
  It drops numbers, notations and identifiers (a token with a digit, a slash, an underscore, a
  dotted or camelCase name: "1849", "e4", "Nf3", a FEN position, "os.path", "useEffect"), single
  letters, names (a capitalised word that does not start a sentence: Danish writes its nouns in
  lower case) with the word or two between two of them ("Game of Thrones"), acronyms, and quoted
  terms and titles of up to eight words ('"the" og "a"'), which mention words rather than use
  them. A capitalised word starts a sentence at the start of the text, after a sentence's end, a
  list marker or a blank line; not after a plain line break, where tables and lists of names put
  theirs. A table of countries and figures, a chess game or an ISBN leaves nothing.
"""

from __future__ import annotations

import re

# What is not prose. Code lines are recognised by shape: Python and SQL keywords at the
# start, assignments, calls, or a trailing ; { }. Keywords are matched case-sensitively, so
# Danish sentences starting with "For" or "Hvis" are left alone.
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LATEX = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|\$[^\s$](?:[^$\n]*[^\s$])?\$", re.S)
_ADDRESS = re.compile(r"\b(?:https?://|ftp://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CODE_HINT = re.compile(
    r"[=;{}(*]|^[ \t]*(?:import|from|return|[A-Z]{3,}|Traceback"
    r"|[A-Z]\w*(?:Error|Exception|Warning))\b",
    re.M,
)
_CODE_LINE = re.compile(
    r"^[ \t]*(?:"
    r"(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(.*"
    r"|class[ \t]+\w+[ \t]*[(:].*"
    r"|(?:return|yield|raise|assert|lambda|import|#include|@\w+)\b.*"
    r"|(?:Traceback|[A-Z]\w*(?:Error|Exception|Warning))\b.*"
    r"|from[ \t]+[\w.]+[ \t]+import\b.*"
    r"|(?:if|elif|while|for|with|except|else|try|finally)\b.*:[ \t]*(?:#.*)?"
    r"|(?:SELECT|FROM|WHERE|GROUP BY|ORDER BY|HAVING|(?:INNER |LEFT |RIGHT |OUTER )?JOIN"
    r"|INSERT INTO|VALUES|UPDATE|SET|DELETE FROM|CREATE TABLE|LIMIT|UNION|WITH|AND|OR|ON)\b.*"
    r"|[\w.\[\]'\"]+[ \t]*(?:[-+*/%]?=|==|!=|<=|>=)[^=\n].*"
    r"|[\w.]+\(.*\)[ \t]*;?"
    r"|.*[;{}][ \t]*"
    r")$",
    re.M,
)
_MATH_SIGN = re.compile(r"[=<>≤≥≈±×÷√^]")
_MATH_LINE = re.compile(r"^.*[=<>≤≥≈±×÷√^].*$", re.M)
_WORD = re.compile(r"[^\W\d_]+")
_LONG_WORD = re.compile(r"[^\W\d_]{2,}")


def _drop_math_line(match: re.Match[str]) -> str:
    """A line with a math sign is a formula unless it has two words of two letters or more."""
    line = match.group()
    return line if len(_LONG_WORD.findall(line)) >= 2 else ""


def strip_non_prose(text: str) -> str:
    """``text`` without code blocks and lines, formulas, URLs and e-mail addresses.

    Each pattern runs only when a cheap check finds its marker, since most texts have none.
    """
    if "`" in text or "~~~" in text:
        text = _INLINE_CODE.sub(" ", _FENCE.sub("\n", text))
    if "$" in text or "\\" in text:
        text = _LATEX.sub(" ", text)
    if "@" in text or "://" in text or "www." in text:
        text = _ADDRESS.sub(" ", text)
    if _CODE_HINT.search(text):
        text = _CODE_LINE.sub("", text)
    if _MATH_SIGN.search(text):
        text = _MATH_LINE.sub(_drop_math_line, text)
    return text.strip()


# A token that is a number or notation: digits anywhere (chess moves, FEN positions, "1e6",
# "CO2", "1800-tallet"), a slash, an underscore, a dotted or camelCase name.
_NOTATION = re.compile(r"\d|/|_|::|->|=>|\(\)|[a-zæøå][A-ZÆØÅ]|[^\W\d_]\.[^\W\d_]")
_QUOTED_TERM = re.compile(
    r"\"[^\"\n]{1,40}\"|“[^”\n]{1,40}”|„[^“”\n]{1,40}[“”]|«[^»\n]{1,40}»|»[^«\n]{1,40}«"
    r"|‘[^’\n]{1,40}’|(?<![^\W_])'[^'\n]{1,40}'(?![^\W_])"
)
_QUOTED_TERM_WORDS = 8  # a quotation of more words is a passage, not a term or a title
# Not ":" or ";": after them Danish lists names ("Canada: Ottawa") and goes on in lower case.
_SENTENCE_END = frozenset(".!?")
_LIST_MARKER = re.compile(r"[-*•–]|\d{1,3}[.)]")
# Single letters are notation ("w", "e") except these words of Danish and its neighbours
# (Icelandic and Faroese "á", "í" show what language a text is in).
_ONE_LETTER_WORDS = frozenset("iIåÅáíóúý")
_NAME_GAP = 2  # lower-case words between two names that are part of them: "Game of Thrones"
_TRAILING = frozenset(",.!?:;")  # a plain word with one of these after it is still plain
_PUNCTUATION = "\"'«»“”„‘’()[]{}.,!?:;*•…–-"


def _drop_term(match: re.Match[str]) -> str:
    return " " if len(match[0].split()) <= _QUOTED_TERM_WORDS else match[0]


def _token_words(token: str) -> list[str]:
    """The words of a token that is not a plain word; none if it is a number or notation."""
    core = token.strip(_PUNCTUATION)
    if not core or _NOTATION.search(core):
        return []
    return [word for word in _WORD.findall(core) if word.isalpha()]  # not "½" or "²"


def language_words(text: str) -> list[str]:
    """The words of ``text`` that carry its language, lower-cased, in order (see the module
    docstring). ``text`` should have passed :func:`strip_non_prose`.

    Most tokens are plain words and take the short way; the rest are stripped of punctuation
    and checked for notation.
    """
    if "'" in text or '"' in text or "«" in text or "»" in text or "“" in text or "‘" in text:
        text = _QUOTED_TERM.sub(_drop_term, text)
    words: list[str] = []
    for paragraph in text.split("\n\n"):
        sentence_start = True
        after_name = -1  # where the words after the last name start, if one was dropped
        for token in paragraph.split():
            word = token if token.isalpha() else token[:-1]
            plain = word.isalpha() and (word is token or token[-1] in _TRAILING)
            if not plain and _LIST_MARKER.fullmatch(token):
                sentence_start = True
                continue
            parts = [word] if plain else _token_words(token)
            for position, part in enumerate(parts):
                if len(part) == 1 and part not in _ONE_LETTER_WORDS:
                    continue
                if part.islower() or (
                    sentence_start and position == 0 and (len(part) == 1 or part[1:].islower())
                ):
                    words.append(part.lower())
                elif part[0].isupper():  # a name; a word or two between names belong to them
                    if after_name >= 0 and len(words) - after_name <= _NAME_GAP:
                        del words[after_name:]
                    after_name = len(words)
            sentence_start = token[-1] in _SENTENCE_END
            if sentence_start:
                after_name = -1
    return words
