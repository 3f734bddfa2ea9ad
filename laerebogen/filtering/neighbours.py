"""Words that tell Danish from its neighbours where lingua has too few letters to go on.

A short text that lingua places in Bokmål, Swedish or English is often plain Danish: lingua's
confidences are relative, and a question of five words carries little of a language. Function
words settle it better: "av", "hva", "ikkje" are not Danish, "af", "hvad", "mig" are not
Bokmål. So, per neighbour language, a text's :class:`Tally` holds the neighbour's words in it
(function words Danish does not have, and letters Danish does not write: ä, ö, ü, ß, and the
Icelandic and Faroese ð, þ, á, í, ó, ú, ý) and the count of Danish words the neighbour does not
have. The neighbour *wins* when its words are there and not outnumbered more than two to one.
The tables hold only words that are not also Danish words ("vad", "slik", "vore", "dit" are
left out), measured on the seeds and on the test data of ``tests/data/language/``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec
from lingua import Language

# Function words of the neighbours that are not Danish words, and letters Danish does not
# write, by the language they point to.
NEIGHBOUR_WORDS = {
    "Norwegian": "av etter mellom uten gjennom mot ut opp hva noe noen mye litt meg deg seg oss "
    "dere ble blir bli blitt enn verken sånn kanskje igjen gjøre gi henne hennes veldig heter "
    "ei sju ikkje "
    "eg kva korleis kvifor kven kvar ein eit dei vere berre mykje heile sjølv frå òg hjå ho "
    "dykk fekk gjekk kjem",
    "Swedish": "av mot ut upp oss blir bli är och inte jag hur varför också till från ett "
    "någon något några mycket bara kanske vilken vilket vilka dessa detta hon utan mellan "
    "genom där här när hade vara finns ska tack ju inga sitt heter sju vem varje alla sedan "
    "redan ganska",
    "English": "the of what how why which with you your this that these those are was were "
    "been has would should could from there their they about when where who will not our we "
    "its into than then them some any",
    "German": "und ist nicht ich ein eine einen einem einer das zu von auf für sich auch wie "
    "sind werden wird es aus bei nach oder aber wenn nur noch sehr dass die",
    "Dutch": "het een zijn niet wat ook maar voor naar uit bij wordt worden heeft hebben deze dat",
}
_NEIGHBOUR_LETTERS = {
    "ä": "Swedish",
    "ö": "Swedish",
    "ü": "German",
    "ß": "German",
    **dict.fromkeys("ðþáíóúý", "Icelandic"),  # and Faroese, which lingua takes for Icelandic
}
# Danish words that the neighbour does not have (Bokmål's optional "meget" is left out).
_NOT_NORWEGIAN = (
    "af efter mellem uden gennem mod ud op nu hvad noget nogen nogle lidt mig dig sig os jer "
    "vores blev bliver blive blevet end hverken sådan måske igen gøre give tage sige spørge "
    "hende hendes fx selvom"
)
_NOT_SWEDISH = (
    "af mellem uden gennem mod ud op hvad noget nogen nogle lidt os jer vores bliver blive "
    "blevet end hverken måske gøre give tage sige spørge hende hendes fx selvom hvor hvem "
    "hvordan hvorfor hvilken hvilke hvilket hvis ikke jeg og til fra meget også hun et være "
    "kun der dette disse når havde"
)
_DANISH_WORDS = {
    "Norwegian": _NOT_NORWEGIAN,
    "Swedish": _NOT_SWEDISH,
    # Danish function words, less those that are English ("end", "give", "mod") or German.
    "English": "af efter mellem uden gennem ud nu hvad noget nogen nogle lidt mig dig sig os jer "
    "vores blev bliver blive blevet hverken sådan måske igen gøre tage sige spørge hende hendes "
    "selvom hvor hvem hvordan hvorfor hvilken hvilke hvis ikke jeg og til fra meget også hun "
    "være kun der dette disse når havde er det en et på som med",
    "German": "af efter mellem uden gennem mod ud op nu hvad noget nogen nogle lidt mig dig sig os "
    "jer vores blev bliver blive blevet end hverken sådan måske igen gøre give tage sige spørge "
    "hende hendes selvom hvor hvem hvordan hvorfor hvilken hvilke hvis ikke jeg og til fra meget "
    "også hun være kun dette disse når havde det en et på som med",
}
_DANISH_WORDS["Dutch"] = _DANISH_WORDS["German"].replace(" en ", " ").replace(" op ", " ")
_DANISH_WORDS["Icelandic"] = _NOT_NORWEGIAN


def _index(table: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """word -> the languages whose table lists it, in the table's order."""
    index: dict[str, tuple[str, ...]] = {}
    for language, words in table.items():
        for word in words.split():
            index[word] = (*index.get(word, ()), language)
    return index


_POINTS_TO = _index(NEIGHBOUR_WORDS)
_ORDER = (*NEIGHBOUR_WORDS, "Icelandic")  # ties go to the first: a detail never varies
_RULES_OUT = _index(_DANISH_WORDS)
LINGUA_NEIGHBOUR = {
    Language.BOKMAL: "Norwegian",
    Language.NYNORSK: "Norwegian",
    Language.SWEDISH: "Swedish",
    Language.ENGLISH: "English",
    Language.GERMAN: "German",
    Language.DUTCH: "Dutch",
    Language.ICELANDIC: "Icelandic",
}


class Tally(msgspec.Struct, frozen=True):
    """Per neighbour language: its words in a text, and the Danish words that it lacks."""

    neighbour: dict[str, list[str]]
    danish: Counter[str]

    def wins(self, language: str) -> bool:
        """Whether ``language``'s words are there and not outnumbered two to one by Danish."""
        found = len(self.neighbour.get(language, ()))
        return found > 0 and self.danish[language] <= 2 * found

    def danish_wins(self, language: str) -> bool:
        """Whether Danish words that ``language`` lacks outnumber its words two to one."""
        return self.danish[language] > 2 * len(self.neighbour.get(language, ()))

    def winner(self, allowed: frozenset[Language]) -> str | None:
        """The neighbour (not allowed) whose words win, the one with most words; or None."""
        permitted = {LINGUA_NEIGHBOUR.get(language) for language in allowed}
        winners = [lang for lang in _ORDER if lang not in permitted and self.wins(lang)]
        return max(winners, key=lambda lang: len(self.neighbour[lang]), default=None)


def tally(words: Iterable[str]) -> Tally:
    """The neighbours' words in ``words`` (lower case) and the Danish words against each."""
    neighbour: dict[str, list[str]] = {}
    danish: Counter[str] = Counter()
    for word in words:
        for language in _POINTS_TO.get(word, ()):
            neighbour.setdefault(language, []).append(word)
        for language in _RULES_OUT.get(word, ()):
            danish[language] += 1
        for letter, language in _NEIGHBOUR_LETTERS.items():
            if letter in word:
                neighbour.setdefault(language, []).append(word)
    return Tally(neighbour, danish)
