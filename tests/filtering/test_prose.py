"""What in a text carries a language: code, formulas and addresses stripped, then the words of
the language kept and numbers, notations, names and quoted terms left out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from laerebogen.filtering.prose import language_words, strip_non_prose


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Se koden:\n```python\nprint('hej')\n```\nDen skriver hej.", "Se koden: Den skriver hej."),
        ("Kald `sorted(tal)` først.", "Kald først."),
        ("Uafsluttet:\n```\nx = 1\ny = 2", "Uafsluttet:"),
        ("Læs https://www.dr.dk/nyheder og www.tv2.dk.", "Læs og"),
        ("Skriv til mette@nordlystryk.dk i dag.", "Skriv til i dag."),
        ("Formlen\n$$E = mc^2$$\nog $a^2 + b^2$ er kendte.", "Formlen og er kendte."),
        ("Udregning:\n18 + 22 + 17 = 57\nAltså 57 point.", "Udregning: Altså 57 point."),
        ("Løsning:\n2x + 3 = 11\nx = 4", "Løsning:"),
        ("import re\nfrom collections import Counter\ntal = [1, 2]\nprint(tal)", ""),
        ("def f(x):\n    return x * 2", ""),
        ("SELECT navn\nFROM kunder\nWHERE by = 'Odense';", ""),
        ("Traceback (most recent call last):\nTypeError: 'NoneType' object", ""),
        ("For det første: nej.\nHvis du vil, så ja.", "For det første: nej. Hvis du vil, så ja."),
        ("Prisen (inkl. moms) er lig med det dobbelte = to gange så meget.", None),
    ],
)
def test_strip_non_prose(text: str, expected: str | None) -> None:
    stripped = " ".join(strip_non_prose(text).split())
    assert stripped == (text if expected is None else expected)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hvem var Tycho Brahe?", "hvem var"),  # names carry no language
        (
            "I dag er det mandag. I morgen er det tirsdag.",
            "i dag er det mandag i morgen er det tirsdag",
        ),
        ("Skriv et kort resumé af Game of Thrones.", "skriv et kort resumé af"),  # a title
        ("Jeg bor i Aarhus og arbejder i Odense.", "jeg bor i og arbejder i"),
        ("Det koster 2.499,95 kr. den 5. juni 1849.", "det koster kr den juni"),
        ("Det skete i 1800-tallet.", "det skete i"),
        ("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR w KQkq - 0 1", ""),
        ("1. e4 e5 2. Nf3 Nc6 3. Bb5 a6", ""),
        ("ISBN 978-87-02-12345-6", ""),
        ("1e6", ""),
        ("Danmark | 5,9 | 43.000\nNorge | 5,5 | 385.000", "danmark"),
        ("| Land | By |\n|---|---|\n| Danmark | Aarhus |", ""),
        ("JavaScript Object Notation", ""),
        ("Brug os.path.join og useEffect her.", "brug og her"),
        ('Forklar forskellen på "the" og "a" på engelsk.', "forklar forskellen på og på engelsk"),
        ("Hvad betyder 'The Lord of the Rings' på dansk?", "hvad betyder på dansk"),
        ("Overskrift\n\nFørst skal du vaske hænder.", "overskrift først skal du vaske hænder"),
        ("- Første punkt\n- Andet punkt", "første punkt andet punkt"),
        ("Hvat er munurin á einum kommunu og einum landi í Føroyum?", None),
    ],
)
def test_language_words(text: str, words: str | None) -> None:
    found = language_words(strip_non_prose(text))
    if words is None:
        assert "á" in found and "í" in found  # letters Danish does not write are kept
    else:
        assert " ".join(found) == words


@given(st.text())
def test_language_words_are_lower_case_words_of_the_text(text: str) -> None:
    for word in language_words(text):
        assert word.isalpha() and word == word.lower()
        assert word in text.lower()
