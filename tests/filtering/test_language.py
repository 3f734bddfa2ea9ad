"""The Danish language filter against real lingua: the seeds and the Danish test data pass,
written counter-examples and whole or mixed examples in the neighbour languages fail."""

from __future__ import annotations

import time

import pytest

from laerebogen.filtering.language import (
    ALONE_LETTERS,
    DANISH,
    LanguageFilter,
    LanguageJudgement,
    language_detector,
)
from laerebogen.filtering.prose import language_words, strip_non_prose
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from tests.support.language_cases import NEIGHBOURS as NEIGHBOUR_FILES
from tests.support.language_cases import CaseSet, case_sets, danish_short, neighbour

# Counter-examples written for these tests: short instructions (5-15 words) and longer answers.
BOKMAL = [
    "Hva er forskjellen på et fylke og en kommune i Norge?",
    "Skriv en kort tekst om hvorfor det er viktig å sove nok.",
    "Forklar hvordan man lager brunost, og hva den smaker.",
    "Gi meg tre tips til en billig ferie i Nord-Norge.",
    "Hvorfor blir bladene gule og røde om høsten?",
    "Lag en handleliste til en koselig fredagskveld med taco.",
    "Hvordan kan jeg bli flinkere til å snakke foran mange mennesker?",
    "Hvilke dyr lever på fjellet om vinteren, og hvordan overlever de kulda?",
    "Han kjørte hjem etter jobben og lagde middag til barna.",
    "Nordlyset oppstår når elektrisk ladde partikler fra sola treffer atmosfæren. Partiklene blir "
    "ledet mot polene av jordas magnetfelt, og når de kolliderer med gassene i lufta, sender "
    "gassene ut lys. Det grønne lyset kommer fra oksygen, mens det røde og fiolette kommer fra "
    "nitrogen. Den beste tiden å se nordlys i Nord-Norge er fra september til mars, når nettene "
    "er lange og mørke.",
    "Jeg har bodd i Bergen i snart ti år, og jeg har fortsatt ikke vent meg til regnet. Likevel "
    "er det noe spesielt med byen: fjellene rundt, fiskemarkedet og de fargerike husene på "
    "Bryggen. Når sola endelig titter frem, er det ingen steder jeg heller vil være.",
    "For å søke om studielån må du logge inn på nettsiden til Lånekassen med BankID. Der fyller "
    "du ut skjemaet og legger ved dokumentasjon på at du er tatt opp ved et studiested. Pengene "
    "blir vanligvis utbetalt i midten av august.",
    "Kjøttkaker i brun saus er en klassisk norsk middagsrett. Bland kjøttdeig med salt, pepper, "
    "litt muskat og potetmel, og form kakene med våte hender. Stek dem i smør til de er brune på "
    "begge sider, og la dem småkoke i sausen i et kvarter. Server med poteter, ertestuing og "
    "tyttebærsyltetøy.",
    "Det er lurt å begynne å spare tidlig, selv om det bare er små beløp hver måned. Sett opp et "
    "fast trekk til en sparekonto samme dag som lønna kommer, så slipper du å tenke på det.",
    "Grunnloven ble vedtatt på Eidsvoll i 1814, og derfor feirer vi nasjonaldagen 17. mai. "
    "Barnetoget er selve høydepunktet i de fleste byer og bygder.",
    "Hei! Takk for sist, det var veldig hyggelig å se deg igjen. Har du lyst til å bli med på "
    "kino på lørdag? Jeg tenkte vi kunne spise pizza først.",
    "Ja, det kan du. Men husk å si ifra til arbeidsgiveren din i god tid, og sjekk hva som står "
    "i arbeidsavtalen om oppsigelsestid.",
    "Svaret er 42, fordi vi må legge sammen alle tallene og dele på antallet.",
]
SWEDISH = [
    "Vad är skillnaden mellan en kommun och en region i Sverige?",
    "Skriv en kort dikt om midsommar och jordgubbar.",
    "Varför är det viktigt att äta frukost varje morgon?",
    "Ge mig tre förslag på saker att göra i Stockholm en regnig dag.",
    "Hur lagar man köttbullar som smakar som mormors?",
    "Berätta om hur Gustav Vasa blev kung av Sverige.",
    "Allemansrätten ger alla människor rätt att vistas i naturen, även på mark som någon annan "
    "äger. Du får gå, cykla och tälta en natt, men du måste visa hänsyn mot djur, natur och "
    "markägare. Det är inte tillåtet att göra upp eld när det är torrt eller att plocka skyddade "
    "växter.",
    "Jag har bott i Göteborg i fem år och trivs verkligen. Staden är lagom stor, det finns mycket "
    "grönska och havet är aldrig långt borta.",
    "Fika är mer än bara kaffe och kaka. Det är en paus i vardagen där man umgås med kollegor "
    "eller vänner, och många arbetsplatser har fasta fikatider både på förmiddagen och "
    "eftermiddagen.",
    "För att ansöka om pass måste du boka en tid hos polisen och ta med giltig legitimation.",
    "Hej! Tack för senast, det var jättetrevligt. Ska vi ses nästa vecka och ta en promenad?",
    "Svaret blir 24 eftersom man först multiplicerar och sedan adderar.",
    "Midsommar firas i Sverige på fredagen mellan den 19 och 25 juni. Man klär en midsommarstång "
    "med blommor och löv, dansar runt den och äter sill, färskpotatis och jordgubbar med grädde. "
    "Många åker ut på landet för att fira tillsammans med släkt och vänner.",
]
ENGLISH = [
    "What is the capital of Australia and why was it chosen?",
    "Write a short poem about the sea at night.",
    "Explain the difference between weather and climate in simple terms.",
    "Give me three tips for learning a new language quickly.",
    "List five animals that live in the Arctic.",
    "How do I politely decline a job offer?",
    "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make "
    "glucose and oxygen. It takes place mainly in the leaves, inside small structures called "
    "chloroplasts, which contain the green pigment chlorophyll.",
    "The Industrial Revolution began in Britain in the late eighteenth century. New machines such "
    "as the spinning jenny and the steam engine transformed how goods were produced, and people "
    "moved from the countryside to the growing cities in search of work.",
    "Dear Sir or Madam, I am writing to complain about the delivery of my order, which arrived "
    "two weeks late and damaged. I would like a full refund. Yours faithfully, John Smith",
    "To reverse a list in Python you can use slicing:\n\n```python\nnumbers = [1, 2, 3]\n"
    "print(numbers[::-1])\n```\n\nThis creates a new list and leaves the original unchanged.",
    "Sure! Here is a simple recipe for pancakes: mix flour, milk and eggs, then fry the batter "
    "in a hot pan with a little butter.",
    "The answer is 42, because we add all the numbers and divide by how many there are.",
]
# Neighbours that a detector with only the Scandinavian languages, English and German judges
# as Danish or Norwegian.
NEIGHBOURS = [
    "Wat is het verschil tussen een gemeente en een provincie in Nederland?",
    "Het weer in Nederland is vaak wisselvallig. In de zomer kan het warm zijn, maar er valt ook "
    "veel regen, en in de winter vriest het soms een paar dagen achter elkaar.",
    "Ísland er eyja í Norður-Atlantshafi. Þar búa um fjögur hundruð þúsund manns og flestir "
    "þeirra búa á höfuðborgarsvæðinu.",
    "Hvat er munurin á einum kommunu og einum landi í Føroyum?",
    "Føroyar eru ein oyggjaflokkur í Norðuratlantshavi. Har búgva umleið fimmti túsund fólk, og "
    "flestu búgva í Havn.",
    "Kva er skilnaden på ein kommune og eit fylke i Noreg?",
    "Eg har budd i Voss heile livet, og eg trivst godt her. Om vinteren går eg på ski, og om "
    "sommaren fiskar eg i elva.",
    "Im Sommer fahren viele Familien an die Nordsee oder an die Ostsee. Dort kann man am Strand "
    "spazieren gehen, baden und frischen Fisch essen.",
]
# Very short instructions (3-9 words), where lingua is weakest, written as Danish/Bokmål pairs.
# Sentences that are the same in both languages are left out of the Bokmål list.
SHORT_DANISH = [
    "Lav en liste over fem frugter.", "Skriv et digt om havet.", "Giv tre tips til god søvn.",
    "Hvad er hovedstaden i Frankrig?", "Beskriv en typisk dansk julefrokost.",
    "Forklar hvad inflation er.", "Skriv en kort historie om en kat, der bor på et fyrtårn.",
    "Hvordan laver man frikadeller?", "Nævn tre fordele ved at gå en tur hver dag.",
    "Hvorfor er det vigtigt at sortere affald?", "Opsummer teksten i tre punkter.",
    "Hvilke planeter er der i solsystemet?", "Skriv en mail til din chef om ferie.",
    "Hvem opfandt telefonen?", "Forklar forskellen på et substantiv og et verbum.",
    "Giv et eksempel på en metafor.", "Hvor mange ben har en edderkop?",
    "Foreslå et navn til en ny café i Aarhus.", "Hvad betyder ordet hygge?",
    "Lav en madplan for en uge.", "Skriv en anmeldelse af en film, du har set for nylig.",
    "Hvordan bliver man bedre til at løbe langt?", "Find fejlen i sætningen.",
    "Oversæt sætningen til engelsk.", "Hvad er forskellen på en by og en kommune?",
    "Lav en huskeliste til en campingtur.", "Beskriv vejret i dag med tre ord.",
    "Hvornår blev kvinder valgt til Folketinget første gang?",
    "Skriv en invitation til en fødselsdag.", "Forklar kort hvordan en solcelle virker.",
    "Giv mig en opskrift på pandekager.", "Hvilket dyr er Danmarks nationalfugl?",
    "Skriv en kort tale til et bryllup.", "Hvad skal man huske, når man flytter?",
    "Sammenlign en elbil og en benzinbil.", "Hvorfor har vi skudår?",
    "Lav en quiz med fem spørgsmål om Danmark.", "Skriv et haiku om efteråret.",
    "Hvad er en god måde at spare penge på?", "Forklar reglerne i fodbold for et barn.",
]  # fmt: skip
SHORT_BOKMAL = [
    "Lag en liste over fem frukter.", "Skriv et dikt om havet.", "Gi tre tips til god søvn.",
    "Hva er hovedstaden i Frankrike?", "Beskriv et typisk norsk julebord.",
    "Forklar hva inflasjon er.", "Skriv en kort historie om en katt som bor i et fyrtårn.",
    "Hvordan lager man kjøttkaker?", "Nevn tre fordeler ved å gå en tur hver dag.",
    "Hvorfor er det viktig å sortere avfall?", "Oppsummer teksten i tre punkter.",
    "Hvilke planeter finnes i solsystemet?", "Skriv en e-post til sjefen din om ferie.",
    "Hvem fant opp telefonen?", "Forklar forskjellen på et substantiv og et verb.",
    "Gi et eksempel på en metafor.", "Hvor mange bein har en edderkopp?",
    "Foreslå et navn til en ny kafé i Bergen.", "Hva betyr ordet koselig?",
    "Lag en middagsplan for en uke.", "Skriv en anmeldelse av en film du har sett nylig.",
    "Hvordan blir man flinkere til å løpe langt?", "Finn feilen i setningen.",
    "Oversett setningen til engelsk.", "Hva er forskjellen på en by og en kommune?",
    "Lag en huskeliste til en campingtur.", "Beskriv været i dag med tre ord.",
    "Når ble kvinner valgt inn på Stortinget første gang?", "Skriv en invitasjon til en bursdag.",
    "Gi meg en oppskrift på pannekaker.", "Hvilket dyr er Norges nasjonalfugl?",
    "Hva må man huske når man flytter?", "Sammenlign en elbil og en bensinbil.",
    "Hvorfor har vi skuddår?", "Lag en quiz med fem spørsmål om Norge.",
    "Skriv et haiku om høsten.", "Hva er en god måte å spare penger på?",
    "Forklar reglene i fotball for et barn.",
]  # fmt: skip
DANISH_INSTRUCTION = "Besvar spørgsmålet kort og præcist."
DANISH_ANSWER = (
    "Det kommer an på situationen, men som regel er det en god idé at spørge en fagperson til "
    "råds, før man beslutter sig."
)
COUNTER_EXAMPLES = {
    f"{name}-{number}": text
    for name, texts in (
        ("bokmål", BOKMAL),
        ("svensk", SWEDISH),
        ("engelsk", ENGLISH),
        ("nabo", NEIGHBOURS),
    )
    for number, text in enumerate(texts)
}
# Every counter-example once as the instruction and once as the output of a Danish example.
CASES = {
    **{
        f"{key} as instruction": (text, "", DANISH_ANSWER) for key, text in COUNTER_EXAMPLES.items()
    },
    **{
        f"{key} as output": (DANISH_INSTRUCTION, "", text) for key, text in COUNTER_EXAMPLES.items()
    },
}
MIXED = {
    "English answer to a Danish question": (
        ("Forklar kort hvorfor himlen er blå.", "", ENGLISH[6].replace("Photosynthesis", "It")),
        "output",
    ),
    "English answer to a Danish task with a Danish input": (
        (
            "Opsummer teksten i én sætning.",
            "Byrådet har vedtaget en ny cykelsti langs havnen, som skal stå færdig til sommer.",
            "The city council has approved a new cycle path along the harbour.",
        ),
        "output",
    ),
    "Bokmål answer to a Danish question": (
        ("Hvornår og hvor blev Norges grundlov vedtaget?", "", BOKMAL[14]),
        "output",
    ),
    "Swedish input to a Danish task": (
        (
            "Oversæt teksten til dansk.",
            "Jag har bott i Göteborg i fem år och trivs.",
            "Jeg har boet i Göteborg i fem år og trives.",
        ),
        None,  # a translation into Danish: the input is the source and is not judged
    ),
    "Swedish input to a summary": (
        ("Opsummer teksten i én sætning.", SWEDISH[6], "Man må færdes frit i naturen."),
        "input",
    ),
    "Bokmål question with a Danish answer": ((BOKMAL[0], "", DANISH_ANSWER), "instruction"),
    "Danish answer that drifts into English": (
        (
            "Giv tre gode grunde til at cykle til arbejde.",
            "",
            "Der er flere gode grunde til at cykle til arbejde. For det første får du motion hver "
            "dag uden at skulle finde ekstra tid til det, og det styrker både hjertet og "
            "musklerne. For det andet sparer du penge på benzin, parkering og billetter, og du "
            "slipper for køer i myldretiden. For det tredje er cyklen god for klimaet, fordi den "
            "ikke udleder noget, og mange oplever at de kommer mere friske på arbejde.\n\n"
            "Finally, cycling is a great way to clear your head before and after work. It gives "
            "you time to think, to enjoy the weather and to notice your surroundings, and many "
            "people find that they sleep better and feel less stressed when cycling becomes part "
            "of their daily routine. Start with one or two days a week and build up from there.",
        ),
        "output (end)",
    ),
}


DANISH_WITH_NON_PROSE = {
    "Python block": (
        "Hvordan vender man en liste om i Python?",
        "",
        "Du kan bruge slicing med et negativt skridt:\n\n```python\nnumbers = [1, 2, 3]\n"
        "reversed_numbers = numbers[::-1]\nprint(reversed_numbers)  # [3, 2, 1]\n```\n\n"
        "Udtrykket `numbers[::-1]` laver en ny liste og lader den oprindelige være uændret. "
        "Vil du vende selve listen, kan du i stedet kalde `numbers.reverse()`.",
    ),
    "SQL input": (
        "Forklar hvad forespørgslen gør.",
        "SELECT name, email\nFROM customers\nWHERE country = 'Denmark'\nORDER BY name;",
        "Forespørgslen henter navn og e-mail på alle kunder i Danmark, sorteret efter navn.",
    ),
    "URL and e-mail": (
        "Hvor kan jeg læse mere om reglerne for barsel?",
        "",
        "Du kan læse mere på https://www.borger.dk/familie-og-boern/barsel eller skrive til "
        "info@example.com, hvis du har spørgsmål til din egen situation.",
    ),
    "equations": (
        "Løs ligningen, og vis udregningen.",
        "2x + 3 = 11",
        "Vi trækker 3 fra på begge sider og dividerer med 2:\n2x = 8\nx = 4\n\n"
        "**Svar:** x = 4, og kontrollen giver 2 · 4 + 3 = 11.",
    ),
    # The input is valid Bokmål as well; lingua cannot decide and the instruction settles it.
    "amounts": (
        "Hvad koster lånet i alt?",
        "Et lån på 250.000 kr. over 10 år med 4,5 % i rente og 1.200 kr. i gebyr.",
        "Med en annuitet på 31.594 kr. om året betaler du i alt 315.940 kr. plus 1.200 kr. i "
        "gebyr, altså 317.140 kr.",
    ),
}


@pytest.fixture(scope="module")
def language_filter() -> LanguageFilter:
    return LanguageFilter()


@pytest.fixture(scope="module")
def judged_sets(language_filter: LanguageFilter) -> dict[str, tuple[CaseSet, list[bool]]]:
    """Every set of ``tests/data/language/``, with whether each example was judged Danish."""
    return {
        cases.name: (
            cases,
            [j.danish for j in language_filter.judge([c.example for c in cases.cases])],
        )
        for cases in case_sets()
    }


def judge_one(
    language_filter: LanguageFilter, instruction: str, input: str, output: str
) -> LanguageJudgement:
    (judgement,) = language_filter.judge([(instruction, input, output)])
    return judgement


# ---------------------------------------------------------------- the data and the targets


def test_the_test_data_has_the_promised_breadth() -> None:
    short = danish_short()
    texts = [r[field] for r in short for field in ("instruction", "output") if r[field]]
    assert sum(2 <= len(text.split()) <= 12 for text in texts) >= 150
    assert {r["kind"] for r in short} >= {"question", "command", "name", "number", "code"}
    for language in NEIGHBOUR_FILES:
        records = neighbour(language)
        assert len(records) >= 50, language
        lengths = {r["length"] for r in records}
        assert lengths == {"short", "sentences", "long"}, language
        assert all(r["instruction_da"] and r["output_da"] for r in records)


def test_danish_is_kept(judged_sets: dict[str, tuple[CaseSet, list[bool]]]) -> None:
    # Target: >= 98 % of every Danish set; measured: all of them (benchmarks/langfilter.py).
    for name, (cases, danish) in judged_sets.items():
        if cases.danish:
            lost = [c.id for c, kept in zip(cases.cases, danish, strict=True) if not kept]
            assert len(lost) <= 0.02 * len(cases.cases), (name, lost)
    seeds, danish = judged_sets["Danish: the packaged seeds"]
    assert len(seeds.cases) == 176 and all(danish)


@pytest.mark.parametrize("language", list(NEIGHBOUR_FILES))
def test_whole_examples_in_a_neighbour_language_are_rejected(
    language: str, judged_sets: dict[str, tuple[CaseSet, list[bool]]]
) -> None:
    # Target: <= 2 % accepted, however short the example.
    cases, danish = judged_sets[f"{language}: whole examples"]
    accepted = [c.id for c, kept in zip(cases.cases, danish, strict=True) if kept]
    assert len(accepted) <= 0.02 * len(cases.cases), accepted


@pytest.mark.parametrize("language", list(NEIGHBOUR_FILES))
def test_a_neighbour_language_answer_under_a_danish_instruction_is_rejected(
    language: str, judged_sets: dict[str, tuple[CaseSet, list[bool]]]
) -> None:
    # Target: <= 10 % accepted for answers of 1-3 sentences; a paragraph is judged on its own.
    for what in ("1-3 sentences", "a paragraph"):
        cases, danish = judged_sets[f"{language}: {what} under a Danish instruction"]
        accepted = [c.id for c, kept in zip(cases.cases, danish, strict=True) if kept]
        assert len(accepted) <= 0.1 * len(cases.cases), (what, accepted)


def test_every_packaged_seed_is_danish(language_filter: LanguageFilter) -> None:
    examples = list(seed_examples(load_seeds(packaged_seed_path())))
    judgements = language_filter.judge([(e.instruction, e.input, e.output) for e in examples])
    failing = [
        f"{e.instruction[:50]}: {j.reason} {j.detail}"
        for e, j in zip(examples, judgements, strict=True)
        if not j.danish
    ]
    assert len(judgements) == 176
    assert not failing
    assert all(j.reason == "" and j.detail == "" and 0 < j.confidence <= 1 for j in judgements)


# ---------------------------------------------------------------- counter-examples


def test_counter_examples_have_the_promised_breadth() -> None:
    assert len(BOKMAL) >= 15
    assert len(SWEDISH) >= 10
    assert len(ENGLISH) >= 10
    for texts in (BOKMAL, SWEDISH, ENGLISH):
        words = [len(text.split()) for text in texts]
        assert sum(5 <= count <= 15 for count in words) >= 5  # instructions
        assert sum(count >= 20 for count in words) >= 4  # answers


def test_counter_examples_fail_on_their_field(language_filter: LanguageFilter) -> None:
    judgements = dict(zip(CASES, language_filter.judge(list(CASES.values())), strict=True))
    passed = [case for case, judgement in judgements.items() if judgement.danish]
    # Measured: one Bokmål question passes in both places. It differs from Danish in two
    # content words ("fjellet", "kulda") and lingua gives Danish 0.29 to Bokmål's 0.45.
    assert passed == ["bokmål-7 as instruction", "bokmål-7 as output"]
    for case, judgement in judgements.items():
        if case in passed:
            continue
        field = case.rsplit(" as ", 1)[1]
        assert judgement.reason == "not_danish", (case, judgement)
        assert judgement.detail.startswith(field), (case, judgement.detail)
        assert "DANISH" not in judgement.detail
        assert judgement.confidence < 0.5


def test_very_short_instructions(language_filter: LanguageFilter) -> None:
    # Every short Danish instruction passes. A Bokmål instruction of 3-9 words over a Danish
    # answer is caught where its words or lingua alone are clear; one that differs from Danish
    # in a content word or two ("Skriv et dikt om havet.") is judged with the Danish answer and
    # passes: 14 of these 38 did when measured.
    danish = language_filter.judge([(text, "", DANISH_ANSWER) for text in SHORT_DANISH])
    bokmal = language_filter.judge([(text, "", DANISH_ANSWER) for text in SHORT_BOKMAL])
    assert [t for t, j in zip(SHORT_DANISH, danish, strict=True) if not j.danish] == []
    accepted = [t for t, j in zip(SHORT_BOKMAL, bokmal, strict=True) if j.danish]
    assert len(accepted) <= 14, accepted
    # As whole examples, with nothing else to go on, 8 of the Bokmål ones pass and 2 of the
    # Danish ones fail: at 3-9 words, Danish and Bokmål are at the limit of what lingua can tell.
    alone = language_filter.judge([(text, "", "") for text in SHORT_BOKMAL])
    assert sum(j.danish for j in alone) <= 8
    alone = language_filter.judge([(text, "", "") for text in SHORT_DANISH])
    assert sum(not j.danish for j in alone) <= 2


@pytest.mark.parametrize("case", list(MIXED))
def test_mixed_examples_are_judged_field_by_field(
    case: str, language_filter: LanguageFilter
) -> None:
    example, field = MIXED[case]
    judgement = judge_one(language_filter, *example)
    if field is None:
        assert judgement.danish, judgement
    else:
        assert not judgement.danish
        assert judgement.detail.startswith(field), judgement.detail


# ---------------------------------------------------------------- the rule, piece by piece


@pytest.mark.parametrize("case", list(DANISH_WITH_NON_PROSE))
def test_danish_with_code_urls_and_numbers_passes(
    case: str, language_filter: LanguageFilter
) -> None:
    judgement = judge_one(language_filter, *DANISH_WITH_NON_PROSE[case])
    assert judgement.danish, judgement


def test_unstripped_code_would_be_judged_english() -> None:
    sql = DANISH_WITH_NON_PROSE["SQL input"][1]
    assert language_detector().compute_language_confidence_values(sql)[0].language.name == "ENGLISH"
    assert strip_non_prose(sql) == ""


def test_a_pure_code_input_is_not_judged(language_filter: LanguageFilter) -> None:
    code = (
        "def average(items):\n    total = 0\n    for item in items:\n        total += item.price\n"
        "    return total / len(items)"
    )
    assert strip_non_prose(code) == ""
    judgement = judge_one(
        language_filter,
        "Find fejlen i koden, og ret den.",
        code,
        "Funktionen dividerer med nul når listen er tom. Tjek først om listen har elementer.",
    )
    assert judgement.danish, judgement


@pytest.mark.parametrize(
    "example",
    [
        (
            "Hvem skal trække i denne stilling?",
            "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
            "Hvid skal trække.",
        ),
        ("Hvilken åbning er det?", "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6", "Det er den spanske åbning."),
        (
            "Hvilket land har flest indbyggere?",
            "Sverige | 10,5 | 450.000\nNorge | 5,5 | 385.000\nDanmark | 5,9 | 43.000",
            "Sverige.",
        ),
        ("Skriv tallet som et decimaltal.", "1e6", "1.000.000"),
        ("Hvad er ISBN-nummeret på bogen?", "", "978-87-02-12345-6"),
    ],
)
def test_fields_without_language_are_not_judged(
    example: tuple[str, str, str], language_filter: LanguageFilter
) -> None:
    # Alone, lingua calls this FEN position Nynorsk (0.56) and the chess moves English.
    notation = example[1] or example[2]  # the input, or the output where there is none
    assert len(language_words(strip_non_prose(notation))) < 2
    assert judge_one(language_filter, *example).danish


@pytest.mark.parametrize(
    "example",
    [
        ("Hvor gammel blev Karen Blixen?", "", "Hun blev 77 år."),
        ("Kan vi tage toget sammen i morgen?", "", "Ja, det kan vi godt."),
        ("Omregn 100 grader fahrenheit til grader celsius.", "", "Cirka 37,8 grader celsius."),
        (
            "Skriv et kort resumé af Game of Thrones.",
            "",
            "Adelsslægter kæmper om tronen i et kongerige.",
        ),
        ("Skriv en funktion i JavaScript, der viser dagens dato.", "", "console.log(new Date());"),
        ("Hvem malede Nattevagten?", "", "Rembrandt van Rijn"),
        ("Er sætningen positiv eller negativ?", "Sikke en dejlig dag!", "Positiv"),
    ],
)
def test_short_danish_fields_are_judged_with_the_rest_of_the_example(
    example: tuple[str, str, str], language_filter: LanguageFilter
) -> None:
    assert judge_one(language_filter, *example).danish


@pytest.mark.parametrize(
    ("example", "detail"),
    [
        (
            ("Hva heter hovedstaden i Sverige?", "", "Stockholm."),
            "instruction: Norwegian words hva",
        ),
        (("Vem skrev Pippi Långstrump?", "", "Astrid Lindgren."), "instruction: Swedish words vem"),
        (("Kva heiter du?", "", "Eg heiter Ola."), "instruction: Norwegian words kva"),
        (("What is the capital of Norway?", "", "Oslo."), "instruction: English words what"),
        (
            ("Hvad hedder Norges hovedstad?", "", "Hovedstaden heter Oslo."),
            "output: Norwegian words heter",
        ),
    ],
)
def test_whole_short_examples_in_a_neighbour_language_are_rejected(
    example: tuple[str, str, str], detail: str, language_filter: LanguageFilter
) -> None:
    judgement = judge_one(language_filter, *example)
    assert not judgement.danish and judgement.reason == "not_danish"
    assert judgement.detail.startswith(detail), judgement.detail
    assert judgement.confidence == 0.0  # the words decided


def test_lingua_alone_decides_a_short_field_when_it_is_sure(
    language_filter: LanguageFilter,
) -> None:
    # No function word gives it away, but lingua alone is sure: Bokmål and Nynorsk 0.93, Danish 0.
    judgement = judge_one(
        language_filter,
        "Foreslå en menu til en fest.",
        "",
        "Lag en handleliste til en koselig fredagskveld med taco.",
    )
    assert not judgement.danish
    assert judgement.detail.startswith("output: NYNORSK") or judgement.detail.startswith(
        "output: BOKMAL"
    )


def test_a_long_field_is_judged_alone_on_its_windows(language_filter: LanguageFilter) -> None:
    # A Danish instruction cannot carry a Bokmål answer that has letters enough of its own.
    judgement = judge_one(language_filter, "Hvad er nordlys?", "", BOKMAL[9])
    assert not judgement.danish and judgement.detail.startswith("output: BOKMAL")
    assert len("".join(language_words(BOKMAL[9]))) >= ALONE_LETTERS


def test_the_follow_up_turns_are_judged_each(language_filter: LanguageFilter) -> None:
    answer = DANISH_ANSWER
    good = [("Kan du give et eksempel?", answer), ("Tak! Hvad så med børn?", answer)]
    english_middle = [("Kan du uddybe?", ENGLISH[7]), ("Og i Danmark?", answer)]
    translation = [("Kan du oversætte det til engelsk?", ENGLISH[6])]
    swedish_user = [("Kan du förklara det på ett enklare sätt?", answer)]
    judgements = language_filter.judge_turns(
        [good, english_middle, translation, swedish_user], first=2
    )
    assert [j.danish for j in judgements] == [True, False, True, False]
    assert judgements[1].detail.startswith("turn 2 answer (end): ENGLISH")
    assert judgements[3].detail.startswith("turn 2 user: Swedish words")


def test_a_short_label_alone_is_not_recognised_as_danish() -> None:
    # Why a label is not judged: alone, lingua has nothing to go on.
    assert language_detector().compute_language_confidence_values("Spam")[0].language != DANISH


def test_translation_tasks_allow_the_named_language_only(language_filter: LanguageFilter) -> None:
    english = "Thank you for your letter. We will get back to you as soon as possible."
    swedish = "Tack för ditt brev. Vi återkommer så snart som möjligt."
    french = "Merci pour votre lettre. Nous vous répondrons dès que possible."
    assert judge_one(language_filter, "Oversæt svaret til engelsk.", DANISH_ANSWER, english).danish
    assert judge_one(
        language_filter, "Skriv et høfligt svar på engelsk til kunden.", "", english
    ).danish
    wrong = judge_one(language_filter, "Oversæt svaret til engelsk.", "", swedish)
    assert not wrong.danish
    assert wrong.detail.startswith("output: Swedish words")
    # French is not one of the detector's languages, so the fields cannot be judged.
    assert judge_one(language_filter, "Oversæt svaret til fransk.", "", french).danish
    # Naming a language is not enough: the instruction must ask for it.
    assert not judge_one(language_filter, "Fortæl om engelsk historie.", "", ENGLISH[7]).danish


def test_danish_function_words_settle_what_lingua_calls_norwegian(
    language_filter: LanguageFilter,
) -> None:
    instruction = "Løs logikgåden, og forklar din tankegang trin for trin."
    danish = (
        "Anna, Bo og Clara har hver ét kæledyr: en hund, en kat og en kanin. Anna har ikke en "
        "hund. Bo har hverken en kat eller en kanin. Clara er allergisk over for katte. Hvem har "
        "hvilket dyr?"
    )
    bokmal = (
        "Anna, Bo og Clara har hvert sitt kjæledyr: en hund, en katt og en kanin. Anna har ikke "
        "hund. Bo har verken katt eller kanin. Clara er allergisk mot katter. Hvem har hvilket dyr?"
    )
    top = language_detector().compute_language_confidence_values(danish)[0]
    assert top.language.name == "BOKMAL"  # lingua alone gets this Danish text wrong
    assert judge_one(language_filter, instruction, danish, "Bo har hunden.").danish
    assert not judge_one(language_filter, instruction, bokmal, "Bo har hunden.").danish


def test_confidence_is_the_lowest_over_the_judged_texts(language_filter: LanguageFilter) -> None:
    detector = language_detector()
    instruction, output = "Hvad er forskellen på vejr og klima?", DANISH_ANSWER
    judgement = judge_one(language_filter, instruction, "", output)
    expected = min(
        detector.compute_language_confidence(" ".join(language_words(text)), DANISH)
        for text in (instruction, output)
    )
    assert judgement.confidence == pytest.approx(expected)
    nothing = judge_one(language_filter, "", "", "```python\nprint(1)\n```")
    assert nothing == LanguageJudgement(danish=True, confidence=1.0)
    assert language_filter.judge([]) == []


def test_min_confidence_applies_to_fields_judged_alone() -> None:
    strict = LanguageFilter(min_confidence=0.99)
    judgement = judge_one(strict, "Digt en haiku om Vesterhavet.", "", DANISH_ANSWER)
    assert not judgement.danish
    assert judgement.reason == "low_confidence"
    assert judgement.detail.startswith("output: DANISH ")


def test_the_detector_is_built_once() -> None:
    first = language_detector()
    start = time.perf_counter()
    filters = [LanguageFilter() for _ in range(100)]
    assert time.perf_counter() - start < 0.5
    assert language_detector() is first
    assert all(f.detector is first for f in filters)
