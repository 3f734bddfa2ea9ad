"""Heuristic filters: every rule kept and rejected in Danish, banned-word inflections and
compounds, false friends, a custom banned list, the seeds and arbitrary text."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laerebogen.config.schema import Filters
from laerebogen.errors import ConfigError
from laerebogen.filtering.heuristics import (
    BANNED_LEMMAS,
    MAX_WORDS,
    REASONS,
    HeuristicFilter,
    Verdict,
)
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples

FILTER = HeuristicFilter()
OUTPUT = "Her er et kort og præcist svar på dansk."


def verdict(instruction: str, input: str = "", output: str = OUTPUT) -> Verdict | None:
    return FILTER.check(instruction, input, output)


def reason(instruction: str, input: str = "", output: str = OUTPUT) -> str | None:
    result = verdict(instruction, input, output)
    return None if result is None else result.reason


def test_every_packaged_seed_passes() -> None:
    failures = [
        (record.instruction, result)
        for record in seed_examples(load_seeds(packaged_seed_path()))
        if (result := FILTER.check(record.instruction, record.input, record.output)) is not None
    ]
    assert failures == []


@pytest.mark.parametrize(
    "instruction",
    [
        "Forklar kort, hvad demokrati er.",
        "Hvad er 2 + 2?",  # four words: the plus sign is not one
        "Æblekage: giv en opskrift til fire.",
        "Øresundsbroen: hvornår blev den åbnet?",
        "Århus eller Aarhus: hvilken stavemåde er korrekt?",
        "1920 var året for Genforeningen. Fortæl om den.",
        "  Forklar kort, hvad inflation er.",  # leading whitespace is not punctuation
        "Skriv et programpunkt til en sommerfest for børn.",  # a schedule, not a program
        "Hvordan forbereder jeg mig bedst til en jobsamtale?",
        "Skriv en Python-funktion der lægger to tal sammen.",
    ],
)
def test_good_danish_instructions_are_kept(instruction: str) -> None:
    assert verdict(instruction) is None


def test_word_limits_are_inclusive_at_the_boundaries() -> None:
    assert reason("Forklar hvad inflation betyder.") is None  # exactly four words
    assert reason("Forklar inflation kort.") == "instruction_too_short"
    at_limit = " ".join(["ord"] * MAX_WORDS)
    assert reason(f"Forklar {at_limit}"[: -len(" ord")]) is None
    assert reason(f"Forklar {at_limit}") == "instruction_too_long"
    # The input has a bound of its own, for whole texts to summarise or rewrite.
    at_input_limit = " ".join(["ord"] * FILTER.max_input_words)
    assert FILTER.max_input_words == Filters().max_input_words == 400
    assert reason("Opsummer teksten kort og præcist.", at_input_limit) is None
    assert reason("Opsummer teksten kort og præcist.", f"{at_input_limit} ord") == "input_too_long"
    short_inputs = HeuristicFilter(max_input_words=10)
    assert short_inputs.check("Opsummer teksten kort og præcist.", "ord " * 11, OUTPUT) == Verdict(
        "input_too_long", "11 words; at most 10 allowed"
    )


@pytest.mark.parametrize(
    ("instruction", "input", "output", "expected"),
    [
        ("Hvad er demokrati?", "", OUTPUT, "instruction_too_short"),
        ("Forklar – kort – demokrati", "", OUTPUT, "instruction_too_short"),
        ("", "", OUTPUT, "instruction_too_short"),
        (" ".join(["ord"] * 151), "", OUTPUT, "instruction_too_long"),
        ("Opsummer teksten i to sætninger.", "ord " * 401, OUTPUT, "input_too_long"),
        ("Forklar kort, hvad demokrati er.", "", "", "empty_output"),
        ("Forklar kort, hvad demokrati er.", "", " \n\t ", "empty_output"),
        ("»Forklar kort, hvad demokrati er.«", "", OUTPUT, "starts_with_punctuation"),
        ('"Hvad betyder hygge på engelsk?"', "", OUTPUT, "starts_with_punctuation"),
        ("- Forklar kort, hvad demokrati er.", "", OUTPUT, "starts_with_punctuation"),
        ("#1 Forklar kort, hvad demokrati er.", "", OUTPUT, "starts_with_punctuation"),
        ("$100 er hvor mange danske kroner?", "", OUTPUT, "starts_with_punctuation"),
        ("Skriv et program der sorterer tal.", "", OUTPUT, "program_request"),
        ("skriv ET  Program, som beregner moms.", "", OUTPUT, "program_request"),
        ("Forklar kort, hvad demokrati er.", "", "Svar\n4. Instruktion: nyt", "template_leak"),
        ("Forklar kort, hvad demokrati er.", "12. Input: x", OUTPUT, "template_leak"),
        ("Forklar kort, hvad 3. Output: er.", "", OUTPUT, "template_leak"),
        ("Forklar kort, hvad demokrati er.", "", "Svar.\nInput: nyt", "template_leak"),
        ("Forklar kort, hvad demokrati er.", "", "Svar.\n  Output: igen", "template_leak"),
        ("Forklar kort, hvad demokrati er.", "", "INSTRUKTION: noget", "template_leak"),
        ("Forklar kort, hvad demokrati er.", "", "#Omskrevet prompt#\nx", "template_leak"),
        ("Forklar kort, hvad demokrati er.", "", "#given prompt#", "template_leak"),
        ("Forklar kort, hvad demokrati er.", "# Given Prompt #", OUTPUT, "template_leak"),
        ("Beskriv billedet med tre sætninger.", "", OUTPUT, "banned_topic"),
        ("Beskriv situationen i den vedhæftede fil.", "", OUTPUT, "banned_topic"),
        ("Gå til forsiden, og find datoen.", "", OUTPUT, "banned_topic"),
    ],
)
def test_each_rule_rejects_with_its_reason(
    instruction: str, input: str, output: str, expected: str
) -> None:
    result = verdict(instruction, input, output)
    assert result is not None
    assert result.reason == expected
    assert result.reason in REASONS
    assert result.detail
    assert "\n" not in result.detail


@pytest.mark.parametrize(
    "output",
    [
        "def f(output: list[str]) -> None:\noutput: list[str] = []\ninput: str = ''",
        "Kl. 12: frokost.\nKl. 13: møde.",
        "Input og output er to vigtige begreber.\nOutputtet: 42.",
        "Trin 1. Læs input. Trin 2. Skriv output.",
        "Brug et #hashtag# i teksten.",
        "Instruktionen: læs teksten højt.",
    ],
)
def test_template_markers_need_their_exact_shape(output: str) -> None:
    assert verdict("Forklar kort, hvad demokrati er.", "", output) is None


def test_details_name_the_field_and_what_matched() -> None:
    leak = verdict("Forklar kort, hvad demokrati er.", "", "Svar.\n7. Instruktion: mere")
    assert leak == Verdict("template_leak", "the output contains '7. Instruktion:'")
    banned = verdict("Beskriv stemningen på Familiebillederne fra 1950.")
    assert banned == Verdict("banned_topic", "'billede' in the instruction: 'familiebillederne'")
    short = verdict("Hvad er demokrati?")
    assert short == Verdict("instruction_too_short", "3 words; at least 4 needed")


def test_the_first_failing_rule_wins() -> None:
    assert reason("Beskriv billedet.", "", "") == "instruction_too_short"
    assert reason("»Beskriv billedet kort og præcist.", "", "") == "empty_output"
    assert reason("»Beskriv billedet kort og præcist.") == "starts_with_punctuation"
    assert reason("Beskriv billedet kort og præcist.", "", "1. Output: x") == "template_leak"


def test_banned_topics_are_checked_in_the_instruction_only() -> None:
    # As in Alpaca: the instruction says what the task is; an input may quote anything.
    assert reason("Beskriv videoen kort og præcist.") == "banned_topic"
    code = "with open('data.csv') as datafil:\n    rows = datafil.readlines()"
    assert reason("Forklar, hvad koden gør, linje for linje.", code) is None
    abstract = "Artiklen viser med grafer og billeder, hvordan søvn påvirker hukommelsen."
    assert reason("Opsummer resuméet i én sætning.", abstract) is None
    assert reason("Opsummer teksten kort og præcist.", "Klik på knappen nederst.") is None
    answer = "Jeg kan ikke se billeder, videoer eller filer, men beskriv dem, så hjælper jeg."
    assert reason("Hvad ser du her mon?", "", answer) is None


INFLECTIONS = {
    "billede": ["billede", "billedet", "billeder", "billederne", "billedes", "billedernes"],
    "fil": ["fil", "filen", "filer", "filerne", "filens"],
    "graf": ["graf", "grafen", "grafer", "graferne"],
    "tegning": ["tegning", "tegningen", "tegninger", "tegningerne"],
    "video": ["video", "videoen", "videoer", "videoerne"],
    "musik": ["musik", "musikken", "musikkens"],
    "foto": ["foto", "fotoet", "fotos", "fotoer", "fotoerne"],
    "diagram": ["diagram", "diagrammet", "diagrammer", "diagrammerne"],
    "illustration": ["illustration", "illustrationen", "illustrationer"],
    "landkort": ["landkort", "landkortet", "landkortene"],
    "flowchart": ["flowchart", "flowchartet", "flowcharts"],
    "lydfil": ["lydfil", "lydfilen", "lydfiler"],
    "lydoptagelse": ["lydoptagelse", "lydoptagelsen", "lydoptagelser", "lydoptagelserne"],
}
COMPOUNDS = {
    "familiebillede": "billede",
    "pasfotoet": "foto",
    "lydfilen": "lydfil",
    "pdf-fil": "fil",
    "PDF-filen": "fil",
    "tekstfiler": "fil",
    "søjlediagram": "diagram",
    "musikvideo": "video",
    "baggrundsmusik": "musik",
    "profilbilledet": "billede",
    "arbejdstegningerne": "tegning",
    "danmarkslandkort": "landkort",
    "kurvegrafen": "graf",
    "forsideillustrationen": "illustration",
    "blyantstegningen": "tegning",
    "videofilen": "fil",
}
PHRASES = {
    "gå til": ["gå til", "går til", "gik til", "gået til", "Gå\ntil"],
    "klik på": ["klik på", "klikke på", "klikker på", "klikkede på", "Klik  på"],
}
FALSE_FRIENDS = [
    "filosofi", "filter", "filtre", "profil", "profilen", "brugerprofiler", "film", "filial",
    "felt", "filt", "fotosyntese", "foton", "biografi", "biograf", "biografen", "geografi",
    "fotograf", "fotograferne", "paragraf", "telegraf", "kortfattet", "stegning", "tegn",
    "tegnsætning", "forbillede", "verdensbilledet", "musiker", "musikalsk", "videospil",
    "billedkunst",  # the banned word is the first element, not the head: not a hit
    "filet", "grafik", "diagrammatisk", "undgå", "tilgå", "klikket", "stjernebillederne",
    "grydestegning", "undertegningen", "homofil", "fremtidsmusik", "kalligrafen",
]  # fmt: skip


@pytest.mark.parametrize(
    ("word", "lemma"),
    [(word, lemma) for lemma, words in INFLECTIONS.items() for word in words],
)
def test_every_inflection_is_banned(word: str, lemma: str) -> None:
    assert FILTER.banned_topic(f"Beskriv {word} i tre sætninger.") == (lemma, word)
    assert FILTER.banned_topic(f"{word.upper()}!") == (lemma, word)


@pytest.mark.parametrize(("word", "lemma"), COMPOUNDS.items())
def test_compounds_with_a_banned_head_are_banned(word: str, lemma: str) -> None:
    assert FILTER.banned_topic(f"Hvad viser {word} egentlig?") == (lemma, word.lower())


@pytest.mark.parametrize(
    ("phrase", "lemma"),
    [(phrase, lemma) for lemma, phrases in PHRASES.items() for phrase in phrases],
)
def test_banned_phrases_match_every_verb_form(phrase: str, lemma: str) -> None:
    hit = FILTER.banned_topic(f"Du {phrase} forsiden af hjemmesiden.")
    assert hit == (lemma, " ".join(phrase.lower().split()))


@pytest.mark.parametrize("word", FALSE_FRIENDS)
def test_false_friends_are_not_banned(word: str) -> None:
    assert FILTER.banned_topic(f"Forklar ordet {word} for en elev.") is None
    assert verdict(f"Forklar ordet {word} for en elev.") is None


@pytest.mark.parametrize(
    "text",
    [
        "Skriv en kort tekst om foråret.",
        "Hvad er lydens hastighed i luft?",
        "Gå tilbage til start og tæl igen.",
        "Det er til at gå til.",
        "Skriv et brev til en patient, som går til lægen hver uge.",
        "Han går til fodbold om tirsdagen; beskriv hans uge.",
        "Forklar, hvornår man bør gå til tandlæge.",
        "Hvor ofte gik danskerne til gudstjeneste i 1800-tallet?",
        "Beskriv, hvad der sker, når man klikker på musen hurtigt.",
        "Hvorfor skal man gå til valg, når der er folketingsvalg?",
    ],
)
def test_ordinary_danish_with_the_phrases_is_not_banned(text: str) -> None:
    assert FILTER.banned_topic(text) is None


@pytest.mark.parametrize(
    ("text", "lemma"),
    [
        ("Gå til forsiden og læs nyhederne.", "gå til"),
        ("Åbn browseren. Gå til dr.dk, og find vejrudsigten.", "gå til"),
        ("Åbn appen, og klik på Indstillinger.", "klik på"),
        ("Log ind. Derefter klik på Profil.", "klik på"),
        ("1. Klik på Start.", "klik på"),
        ("- Gå til Rejseplanen og find en afgang.", "gå til"),
        ("Forklar, hvad der sker, når du klikker på linket i mailen.", "klik på"),
        ("Fortæl, hvad man finder, når man går til kommunens hjemmeside.", "gå til"),
        ("Beskriv, hvad der sker, hvis man går til www.borger.dk.", "gå til"),
        ("Hvad sker der, når jeg klikker på den røde knap?", "klik på"),
    ],
)
def test_the_phrases_hit_where_they_ask_to_navigate(text: str, lemma: str) -> None:
    hit = FILTER.banned_topic(text)
    assert hit is not None and hit[0] == lemma, hit


def test_a_custom_list_replaces_the_built_in_one() -> None:
    custom = HeuristicFilter(["Kamera", "tryk på", "graf"])
    assert custom.lemmas == ("kamera", "tryk på", "graf")
    assert custom.check("Beskriv billedet i tre sætninger.", "", OUTPUT) is None
    assert custom.check("Hvad viser videoen egentlig?", "", OUTPUT) is None
    # A lemma outside the table gets regular Danish inflection and compounds.
    for word in ["kamera", "kameraet", "kameraer", "kameraerne", "mobilkameraets"]:
        assert custom.banned_topic(f"Tag {word} frem.") == ("kamera", word)
    for phrase in ["tryk på", "trykker på", "trykkede på", "trykke på"]:
        assert custom.banned_topic(f"Du {phrase} knappen.") == ("tryk på", phrase)
    assert custom.banned_topic("Tryk på Gem.") == ("tryk på", "tryk på")
    assert custom.banned_topic("Han trykker på sin bror for at få svar.") is None
    # A lemma in the table keeps its forms and false friends.
    assert custom.banned_topic("Tegn grafen.") == ("graf", "grafen")
    assert custom.banned_topic("Gå i biografen.") is None
    result = custom.check("Beskriv kameraet kort og præcist.", "", OUTPUT)
    assert result == Verdict("banned_topic", "'kamera' in the instruction: 'kameraet'")


@pytest.mark.parametrize("lemma", ["podcast", "app", "chat", "e-mail"])
def test_regular_inflection_of_unknown_nouns(lemma: str) -> None:
    custom = HeuristicFilter([lemma])
    for suffix in ["", "en", "s"]:
        assert custom.banned_topic(f"Om {lemma}{suffix} i dag.") == (lemma, lemma + suffix)
    assert custom.banned_topic(f"Om lang{lemma}en.") is not None
    assert custom.banned_topic(f"Om {lemma}kursus.") is None


def test_an_empty_custom_list_means_the_built_in_one() -> None:
    for banned in ([], ["", "  "]):
        assert HeuristicFilter(banned).lemmas == tuple(BANNED_LEMMAS)


@pytest.mark.parametrize("lemma", ["c++", "fil*", "'billede'", "a_b"])
def test_a_custom_lemma_must_be_words(lemma: str) -> None:
    with pytest.raises(ConfigError, match=r"filters\.banned_words"):
        HeuristicFilter([lemma])


def test_every_built_in_form_is_banned_alone_and_as_a_compound_head() -> None:
    for lemma, (forms, _) in BANNED_LEMMAS.items():
        for form in forms:
            if " " in form:  # a verb phrase: banned where it acts on a page or the like
                assert FILTER.banned_topic(f"({form} forsiden)") == (lemma, form)
                continue
            assert FILTER.banned_topic(f"({form})") == (lemma, form)
            assert FILTER.banned_topic(f"Se alle eksempel{form}.") is not None


def test_pathological_text_is_handled_in_linear_time() -> None:
    instruction = "Forklar kort hvad teksten betyder."
    texts = [
        "a" * 200_000 + "fil",
        "a-" * 100_000 + "fil",
        ":" * 200_000,
        "#" * 200_000,
        "1. " * 100_000,
        "gå " * 100_000,
        "x" * 200_000,
    ]
    start = time.perf_counter()
    for text in texts:
        FILTER.check(instruction, text[:5_000], text)
        FILTER.banned_topic(text)
    assert time.perf_counter() - start < 10


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text())
def test_check_never_raises_and_returns_a_known_reason(
    instruction: str, input: str, output: str
) -> None:
    result = FILTER.check(instruction, input, output)
    assert result is None or (result.reason in REASONS and "\n" not in result.detail)


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzæøå", min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(WORDS, max_size=6),
    st.sampled_from([f for forms, _ in BANNED_LEMMAS.values() for f in forms if " " not in f]),
    st.lists(WORDS, max_size=6),
    st.sampled_from([" ", ", ", ". ", "\n", " (", ": "]),
)
def test_a_banned_form_as_a_word_is_found_anywhere(
    before: list[str], form: str, after: list[str], separator: str
) -> None:
    text = separator.join([*before, form, *after])
    assert FILTER.banned_topic(text) is not None


ORDINARY = st.sampled_from("han hun vi de skal gerne tit lægen byen skole fodbold ro".split())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(ORDINARY, max_size=4),
    st.sampled_from(["gå til", "klik på"]),
    st.lists(ORDINARY, max_size=6),
    st.sampled_from([". ", "\n", "! ", ": ", ", og "]),
)
def test_a_navigation_phrase_is_an_order_at_a_clause_start_and_not_inside_one(
    before: list[str], phrase: str, after: list[str], separator: str
) -> None:
    lemma = phrase
    ordered = " ".join(before) + separator + " ".join([phrase, *after])
    assert FILTER.banned_topic(ordered) == (lemma, phrase)
    inside = " ".join(["Forklar", "at", *before, phrase, *after])
    assert FILTER.banned_topic(inside) is None
