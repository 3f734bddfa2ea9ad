"""Heuristic filters for generated examples: the Alpaca rules, made right for Danish.

Alpaca drops instructions that are too short or too long, start with punctuation, ask for a
program or mention things a text-only model cannot see or make (images, graphs, files). Its
banned-word check is an English substring test; in Danish that misses every inflection
("billederne") and compound ("familiebillede") and hits unrelated words ("profil", "biograf").

Banned topics are matched per word: each lemma has an explicit table of its inflected forms, and
a word is a hit when it ends in one of them and the rest is either nothing, a hyphenated first
part ("pdf-fil") or at least three letters, because Danish puts a compound's head last
("familiebilledet"). A short list of false friends per lemma (endings such as "profil" or "ograf")
covers words that only look like such compounds. Consequences worth knowing:

- a banned word as the first element is not a hit: "billedkunst", "fotosyntese" and "filosofi"
  are about art, plants and thought, not about a picture the model would have to see;
- figurative "billede" compounds ("forbillede", "verdensbillede") are false friends;
- "stegning" (frying) is not a drawing: a one-letter first part is too short, and the common
  frying compounds ("grydestegning") are false friends, while "blyantstegning" is a drawing;
- only the forms of a lemma count, not its relatives: "fotografi" and the verb "tegne" are other
  lemmas, which a custom list can add;
- lemmas missing from the table (a custom ``filters.banned_words``) get regular noun endings, and
  a lemma with a space ("tryk på") is a verb phrase whose first word gets regular verb endings.

As in Alpaca, banned topics are looked for in the instruction only: an input may quote a program
that reads a "datafil" or an abstract about "grafer", and the task is still one a text model can
do. A verb phrase ("gå til", "klik på") is a hit only where it asks to operate something the
model cannot: its imperative starting a sentence or a clause ("Gå til forsiden", "Åbn appen, og
klik på ..."), or any form whose object, within the next five words, is a web page, a link, a
menu, a button, a tab or an address ("du klikker på linket"). "Han går til fodbold" and "når
man går til lægen" are ordinary Danish.

The input has its own length bound (``filters.max_input_words``): Alpaca bounds the
instruction, and summaries and rewrites need whole texts as input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

import msgspec

from laerebogen.errors import ConfigError

MIN_INSTRUCTION_WORDS = 4
MAX_WORDS = 150
DEFAULT_MAX_INPUT_WORDS = 400
NAVIGATION_WINDOW = 5  # words after a verb phrase that may hold what it navigates to
MIN_COMPOUND_PREFIX = 3

# Every reason code check() can return, in the order it tries the rules.
REASONS: tuple[str, ...] = (
    "instruction_too_short",
    "instruction_too_long",
    "input_too_long",
    "empty_output",
    "starts_with_punctuation",
    "program_request",
    "template_leak",
    "banned_topic",
)


class Verdict(msgspec.Struct, frozen=True):
    """Why an example was rejected: a reason code from :data:`REASONS` and a one-line detail."""

    reason: str
    detail: str


def _noun(lemma: str, *endings: str) -> tuple[str, ...]:
    """The forms ``lemma + ending``, each with its genitive (an added -s unless it ends in s)."""
    forms = [lemma + ending for ending in endings]
    genitives = [form + "s" for form in forms if not form.endswith("s")]
    return tuple(dict.fromkeys(forms + genitives))


# The built-in banned list: lemma -> (its forms, false friends). A false friend is a word ending,
# matched against the compound with the lemma's base form, that looks like a compound of the lemma
# but is another word. Single-word forms also match as compound heads; forms with a space are
# phrases.
BANNED_LEMMAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "billede": (
        _noun("billede", "", "t", "r", "rne"),
        # Figurative pictures: role models, worldviews, constellations, the state of things.
        (
            "forbillede", "sindbillede", "selvbillede", "verdensbillede", "menneskebillede",
            "fjendebillede", "skræmmebillede", "helhedsbillede", "sygdomsbillede", "spejlbillede",
            "stjernebillede", "ordbillede", "drømmebillede", "idealbillede", "risikobillede",
            "gadebillede", "mediebillede", "erindringsbillede", "tidsbillede", "vrangbillede",
            "skriftbillede",
        ),
    ),
    "foto": (_noun("foto", "", "et", "s", "er", "erne", "ene"), ()),
    "graf": (
        _noun("graf", "", "en", "er", "erne"),
        # Greek -graf words are people and things that write: biograf, fotograf, kalligraf, ...
        ("ograf", "ygraf", "igraf", "paragraf", "telegraf"),
    ),
    "diagram": (_noun("diagram", "", "met", "mer", "merne"), ()),
    "flowchart": (_noun("flowchart", "", "et", "en", "s", "ene", "er", "erne"), ()),
    "tegning": (
        _noun("tegning", "", "en", "er", "erne"),
        # Signing, subscribing and frying; frying word by word, since a linking s before
        # "tegning" is common in drawings ("blyantstegning").
        (
            "påtegning", "undertegning", "overtegning", "aktietegning", "nedtegning",
            "friturestegning", "gennemstegning", "grillstegning", "grydestegning",
            "tørstegning", "ovnstegning", "panstegning",
        ),
    ),
    "illustration": (_noun("illustration", "", "en", "er", "erne"), ()),
    "fil": (
        _noun("fil", "", "en", "er", "erne"),
        # Profiles and the Greek -fil of lovers; not all -ofil: "videofil" is a video file.
        (
            "profil", "pædofil", "hydrofil", "lipofil", "bibliofil", "anglofil", "frankofil",
            "germanofil", "slavofil", "cinefil", "audiofil", "homofil", "heterofil", "nekrofil",
            "zoofil", "diskofil",
        ),
    ),
    "landkort": (_noun("landkort", "", "et", "ene"), ()),
    "video": (_noun("video", "", "en", "er", "erne"), ()),
    "lydfil": (_noun("lydfil", "", "en", "er", "erne"), ()),
    "lydoptagelse": (_noun("lydoptagelse", "", "n", "r", "rne"), ()),
    "musik": (_noun("musik", "", "ken"), ("fremtidsmusik", "kattemusik")),
    "gå til": (("gå til", "går til", "gik til", "gået til"), ()),
    "klik på": (
        ("klik på", "klikke på", "klikker på", "klikkede på", "klikket på", "klikkes på"),
        (),
    ),
}  # fmt: skip

_VOWELS = frozenset("aeiouyæøåéèêáàäöü")
_LEMMA = re.compile(r"[^\W_]+(?:[- ][^\W_]+)*")
_WORD = re.compile(r"(?<!\S)\S*?[^\W_]")  # a whitespace-separated token with a letter or digit
# A header the prompt template uses, just before a colon: numbered ("4. Instruktion:") anywhere,
# or alone at a line start, capitalised: "output: list[str] = []" is Python in a code answer.
_HEADER_BEFORE_COLON = re.compile(
    r"(?:\d{1,3}[ \t]*[.)][ \t]*(?i:instruktion|instruction|input|output)"
    r"|^[ \t]*(?:I(?i:nstruktion|nstruction|nput)|O(?i:utput)))[ \t]*\Z",
    re.MULTILINE,
)
_HEADER_WINDOW = 64  # characters before a colon that can hold a header
_PROMPT_MARKER = re.compile(r"#[ \t]*(?:[^\W\d_]+[ \t]+){0,2}prompt[ \t]*#", re.IGNORECASE)
_PROGRAM_REQUEST = re.compile(r"\s*skriv\s+et\s+program(?![^\W_])", re.IGNORECASE)
# What comes before a verb phrase that starts a clause, up to the phrase: a sentence end, a
# line or list item, or ", og", then perhaps a word that orders steps ("Åbn appen. Klik så på").
_CLAUSE_START = re.compile(
    r"(?:\A|[.!?:;•*\n]|(?<![^\W_])-|\d[.)]|,\s*og)\s*"
    r"(?:(?:og så|og|så|derefter|dernæst|først|bagefter|til sidst),?\s+)?\Z"
)
# What a navigation verb phrase acts on: pages, links, menus, buttons, tabs, addresses.
_NAVIGATION_OBJECT = re.compile(
    r"(?:hjemme|web|net|for|start|internet|login)side|link|menu|fane|knap|ikon|\burl\b"
    r"|websted|adresse(?:felt|linje|bjælke)|indstilling|browser|www\.|https?:"
)


def _doubled(stem: str) -> list[str]:
    """The stem with its final consonant doubled after a single vowel (musik -> musikk), if so."""
    if len(stem) >= 2 and stem[-1] not in _VOWELS and stem[-2] in _VOWELS and stem[-1].isalpha():
        return [stem + stem[-1]]
    return []


def _regular_noun_forms(lemma: str) -> tuple[str, ...]:
    """Regular Danish noun forms of a lemma missing from the table (harmless extras included)."""
    if lemma.endswith("e"):
        return _noun(lemma, "", "n", "t", "r", "rne", "ne")
    forms = _noun(lemma, "", "en", "et", "er", "erne", "e", "ene")
    for stem in _doubled(lemma):
        forms += _noun(stem, "en", "et", "er", "erne", "e", "ene")
    return forms


def _regular_verb_forms(verb: str) -> tuple[str, ...]:
    """Regular Danish verb forms from an infinitive ("klikke") or an imperative ("klik")."""
    stem = verb
    if verb.endswith("e") and len(verb) > 2:
        stem = verb[:-1]
        if len(stem) >= 2 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS:
            stem = stem[:-1]
    forms = [verb, stem, verb + "r"] if verb[-1] in _VOWELS else [verb, stem]
    for base in (stem, *_doubled(stem)):
        forms += [base + ending for ending in ("e", "er", "ede", "et", "es", "te", "t")]
    return tuple(dict.fromkeys(forms))


def _imperative(phrase: str) -> str:
    """The imperative of a verb phrase given by its imperative ("klik på") or infinitive."""
    verb, rest = phrase.split(" ", 1)
    forms = _regular_verb_forms(verb)
    return f"{forms[1] if verb.endswith('e') and len(verb) > 2 else verb} {rest}"


def _lemma_entry(lemma: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A lemma's forms and false friends: from the table, else by regular inflection."""
    if lemma in BANNED_LEMMAS:
        return BANNED_LEMMAS[lemma]
    if " " in lemma:
        verb, rest = lemma.split(" ", 1)
        return tuple(f"{form} {rest}" for form in _regular_verb_forms(verb)), ()
    return _regular_noun_forms(lemma), ()


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching exactly ``words``, factored as a trie so a position costs few branches.

    A space in a word matches any run of whitespace (phrases may wrap).
    """
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, dict]) -> str:
        branches = [
            (r"\s+" if char == " " else re.escape(char)) + pattern(child)
            for char, child in sorted(node.items())
            if char
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(root)


def _template_leak(text: str) -> tuple[int, str] | None:
    """Where a leaked template marker ends in ``text``, and the marker; None if there is none.

    Colons are rare, so each is found with a plain search and only the text just before it is
    matched: scanning all of the text with the header regex costs several times more.
    """
    colon = text.find(":")
    while colon != -1:
        if match := _HEADER_BEFORE_COLON.search(text, max(0, colon - _HEADER_WINDOW), colon):
            return colon + 1, text[match.start() : colon + 1].strip()
        colon = text.find(":", colon + 1)
    if "#" in text and (match := _PROMPT_MARKER.search(text)):
        return match.end(), match[0]
    return None


def _count_words(text: str) -> int:
    """Whitespace-separated tokens with a letter or digit: a dash or an emoji is not a word."""
    return len(_WORD.findall(text))


def _word_start(text: str, end: int) -> int:
    """Where the word (hyphenated parts included) that runs up to ``end`` begins.

    ``str.isalnum`` is the regexes' ``[^\\W_]``: letters and digits.
    """
    start = end
    while start > 0 and (
        text[start - 1].isalnum()
        or (text[start - 1] == "-" and start > 1 and text[start - 2].isalnum())
    ):
        start -= 1
    return start


class HeuristicFilter:
    """The merge job's heuristic filters; :meth:`check` returns the first rule an example fails.

    ``banned_words`` (the config key ``filters.banned_words``) replaces the built-in banned
    lemmas; empty means :data:`BANNED_LEMMAS`. ``max_input_words`` bounds the input.
    """

    def __init__(
        self, banned_words: Sequence[str] = (), max_input_words: int = DEFAULT_MAX_INPUT_WORDS
    ) -> None:
        self.max_input_words = max_input_words
        lemmas = [" ".join(word.lower().split()) for word in banned_words]
        lemmas = [lemma for lemma in lemmas if lemma] or list(BANNED_LEMMAS)
        for lemma in lemmas:
            if not _LEMMA.fullmatch(lemma):
                raise ConfigError(
                    f"filters.banned_words: {lemma!r} is not a word or a phrase of words"
                )
        self.lemmas: tuple[str, ...] = tuple(dict.fromkeys(lemmas))
        self._forms: dict[str, list[str]] = {}
        self._phrases: dict[str, str] = {}
        self._imperatives = {_imperative(lemma) for lemma in self.lemmas if " " in lemma}
        self._false_friends: dict[str, tuple[str, ...]] = {}
        for lemma in self.lemmas:
            forms, false_friends = _lemma_entry(lemma)
            self._false_friends[lemma] = false_friends
            for form in forms:
                if " " in form:
                    self._phrases.setdefault(form, lemma)
                else:
                    self._forms.setdefault(form, []).append(lemma)
        self._longest = max(map(len, self._forms), default=0)
        # A form that ends a word (not a hyphenated first part). Neither pattern looks behind,
        # which would cost a check at every position: the few matches are checked in Python.
        never = "(?!)"
        self._form_at_end = re.compile(
            f"(?:{_trie_pattern(self._forms) or never})" + r"(?![^\W_]|-[^\W_])"
        )
        self._phrase = re.compile(f"(?:{_trie_pattern(self._phrases) or never})" + r"(?![^\W_])")

    def check(self, instruction: str, input: str, output: str) -> Verdict | None:
        """None to keep the example, else the :class:`Verdict` of the first rule it fails."""
        words = _count_words(instruction)
        if words < MIN_INSTRUCTION_WORDS:
            return Verdict(
                "instruction_too_short",
                f"{words} words; at least {MIN_INSTRUCTION_WORDS} needed",
            )
        if words > MAX_WORDS:
            return Verdict("instruction_too_long", f"{words} words; at most {MAX_WORDS} allowed")
        words = _count_words(input)
        if words > self.max_input_words:
            return Verdict(
                "input_too_long", f"{words} words; at most {self.max_input_words} allowed"
            )
        if not output.strip():
            return Verdict("empty_output", "the output is empty after stripping whitespace")
        # Unicode punctuation and symbols, as in Alpaca's string.punctuation; Æ, Ø, Å, digits pass.
        first = instruction.lstrip()[0]
        if unicodedata.category(first)[0] in "PS":
            return Verdict("starts_with_punctuation", f"the instruction starts with {first!r}")
        # A whole word: "Skriv et programpunkt til festen" asks for a schedule, not code.
        if match := _PROGRAM_REQUEST.match(instruction):
            return Verdict("program_request", f"the instruction starts with {match[0].strip()!r}")
        # One search of the joined fields: no marker spans a line break, so none spans two fields.
        joined = f"{instruction}\n{input}\n{output}"
        if leak := _template_leak(joined):
            end, marker = leak
            field = "instruction" if end <= len(instruction) else "input"
            field = "output" if end > len(instruction) + len(input) + 1 else field
            return Verdict("template_leak", f"the {field} contains {marker!r}")
        if hit := self.banned_topic(instruction):
            lemma, word = hit
            word = word if len(word) <= 40 else word[:20] + "…" + word[-19:]
            return Verdict("banned_topic", f"{lemma!r} in the instruction: {word!r}")
        return None

    def banned_topic(self, text: str) -> tuple[str, str] | None:
        """The first banned ``(lemma, matched word in lower case)`` in ``text``, or None."""
        lowered = text.lower()
        for match in self._form_at_end.finditer(lowered):
            word = lowered[_word_start(lowered, match.start()) : match.end()]
            if lemma := self._head_lemma(word):
                return lemma, word
        for match in self._phrase.finditer(lowered):
            if match.start() == 0 or not lowered[match.start() - 1].isalnum():
                phrase = " ".join(match[0].split())
                if self._asks_to_navigate(lowered, match.start(), match.end(), phrase):
                    return self._phrases[phrase], phrase
        return None

    def _asks_to_navigate(self, lowered: str, start: int, end: int, phrase: str) -> bool:
        """Whether the verb phrase at ``start:end`` is an order that starts a clause, or acts on
        a page, link, menu or the like within the next :data:`NAVIGATION_WINDOW` words."""
        if phrase in self._imperatives and _CLAUSE_START.search(lowered, max(0, start - 40), start):
            return True
        following = lowered[end : end + 20 * NAVIGATION_WINDOW].split()[:NAVIGATION_WINDOW]
        return bool(_NAVIGATION_OBJECT.search(" ".join(following)))

    def _head_lemma(self, word: str) -> str | None:
        """The banned lemma that is ``word`` or its compound head (the longest form wins)."""
        for cut in range(max(0, len(word) - self._longest), len(word)):
            for lemma in self._forms.get(word[cut:], ()):
                prefix = word[:cut]
                if prefix and not prefix.endswith("-") and len(prefix) < MIN_COMPOUND_PREFIX:
                    continue
                if not (prefix + lemma).endswith(self._false_friends[lemma]):
                    return lemma
        return None
