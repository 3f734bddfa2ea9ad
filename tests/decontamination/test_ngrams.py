"""Word n-gram matching of conversations against evaluation items: planted copies are found
(verbatim, in other case and punctuation, inside a longer message), near misses are not, n-grams
never span two messages, and stock phrases do not count."""

from __future__ import annotations

import numpy as np
import pytest

from laerebogen.decontamination import ngrams
from laerebogen.decontamination.ngrams import BenchmarkIndex, Item, Rule, find_matches

RULE = Rule(n=8, short_share=1.0, min_tokens=3, common_share=0.001, common_min=10)
# 14 words: at least n, so it matches by any 8 words in a row
LONG = "Hvilken dansk konge lod Rundetårn bygge i København, og hvad skulle tårnet bruges til?"
SHORT = "Hvad hedder Norges hovedstad?"  # 4 words: fewer than n, so it must occur whole
ITEMS = [Item("q-long", (LONG, "Christian 4.")), Item("q-short", (SHORT, "Oslo"))]


def matched(conversations: list[list[str]], items: list[Item] = ITEMS, rule: Rule = RULE):
    """Each conversation's matched item ids (empty: clean)."""
    index = BenchmarkIndex.build(items, rule)
    found = find_matches(index, conversations)
    return [[index.item_ids[i] for i in found.items.get(c, [])] for c in range(len(conversations))]


def test_planted_copies_are_found_whatever_their_case_and_punctuation() -> None:
    conversations = [
        [LONG],  # verbatim
        [LONG.upper().replace(",", " ;").replace("?", "!!")],  # case and punctuation
        ["Jeg har en lektie. " + LONG + " Tak for hjælpen!"],  # inside a longer message
        ["Kan du hjælpe?", "Først: " + SHORT.lower().rstrip("?")],  # a later message
        ["Hvad er klokken?"],  # clean
    ]
    assert matched(conversations) == [["q-long"], ["q-long"], ["q-long"], ["q-short"], []]


def test_near_misses_do_not_match() -> None:
    words = LONG.split()
    one_changed = " ".join([*words[:7], "Vor", *words[8:]])  # runs of 7 and 6 words
    conversations = [
        [one_changed],
        [" ".join(words[:7])],  # n - 1 words of the item
        [" ".join(reversed(words))],  # its words, another order
        ["Hvad hedder Sveriges hovedstad?"],  # the short item with one word changed
        ["Hvad hedder Norges"],  # most of the short item, not the whole
    ]
    assert matched(conversations) == [[], [], [], [], []]


def test_an_item_split_over_two_messages_matches_only_by_an_n_gram_of_one_of_them() -> None:
    words = LONG.split()
    halves = [" ".join(words[:6]), " ".join(words[6:])]  # 6 and 8 words: the second matches
    split_short = [" ".join(words[:7]), " ".join(words[7:])]  # 7 and 7: neither does
    assert matched([halves, split_short]) == [["q-long"], []]
    # Neither does an item match across the messages' boundary in one batch of ids.
    assert matched([[words[0]], [" ".join(words[1:8])]]) == [[], []]


def test_fields_are_matched_on_their_own_and_one_or_two_words_never() -> None:
    # "Christian 4." and "Oslo" are under min_tokens: ordinary words, not leaks.
    assert matched([["Christian 4. byggede meget"], ["Oslo"]]) == [[], []]
    index = BenchmarkIndex.build([Item("tiny", ("Ja", "Nej tak")), *ITEMS], RULE)
    assert index.unmatched == [0]
    # A short field matches by a share of its words in one run.
    half = RULE._replace(short_share=0.5)
    assert matched([["Hvad hedder Norges bedste fodboldhold?"]], rule=half) == [["q-short"]]
    assert matched([["Hvad hedder Norges bedste fodboldhold?"]]) == [[]]


@pytest.mark.parametrize(("copies", "counts"), [(10, True), (11, False)])
def test_an_n_gram_in_many_conversations_is_a_stock_phrase(copies: int, counts: bool) -> None:
    phrase = "jeg ser frem til at høre fra jer og ønsker jer en god dag"
    items = [Item("letter", (phrase,)), Item("rare", (LONG,))]
    conversations = [[f"Kære Anna, {phrase}."] for _ in range(copies)] + [[LONG]]
    index = BenchmarkIndex.build(items, RULE)
    found = find_matches(index, conversations)
    assert (0 in found.items) is counts  # above common_min (10) conversations: common
    assert found.items[copies] == [1] and found.common == (0 if counts else 7)  # its 7 8-grams
    # A share of a large dataset raises the bar above the minimum.
    assert RULE._replace(common_share=0.5).common_above(100) == 50
    assert RULE.common_above(100) == 10


def test_an_n_gram_shared_by_two_items_counts_for_both() -> None:
    items = [Item("a", (LONG,)), Item("b", (f"Svar kort. {LONG}",)), Item("c", (SHORT,))]
    assert matched([[LONG]], items) == [["a", "b"]]


def test_conversations_are_numbered_right_across_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ngrams, "_BATCH_TOKENS", 16)  # a batch every one or two conversations
    conversations = [["Hvad er klokken nu?"] * 3 if k % 3 else [LONG] for k in range(12)]
    assert [bool(ids) for ids in matched(conversations)] == [k % 3 == 0 for k in range(12)]


def test_no_conversations_and_no_matchable_items() -> None:
    assert matched([]) == []
    assert matched([["noget"]], [Item("x", ("Ja",))]) == [[]]
    hashes, valid = ngrams.window_hashes(np.array([1, 2], np.uint64), 3)
    assert len(hashes) == len(valid) == 0
