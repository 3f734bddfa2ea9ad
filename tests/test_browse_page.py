"""The browse page in a real browser: headless Chromium opens browse/index.html of a small
finished run from the file system (no server) and does what a reader does: the run's totals,
a text search, the filters, a conversation and its lineage, the rejections, the map; without
a JavaScript error. A screenshot of each view is kept (tests/support/browser.py says where).

The run is tests/support/lineage_run.py's: every step that changes text ran, with known
changes, and rejections in a shard and in merges."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains

from laerebogen.outputs.browse import write_browse
from tests.support.browser import Browser, artifact_dir, chromium, require_browser
from tests.support.lineage_run import BASE, EVOLVED, FOLLOWUP, lineage_run

pytestmark = pytest.mark.slow  # starts a browser: about 10 s

# The final conversations, in order: the evolved first record, then the three base records
# (the first corrected by grammar, the second improved by quality: the only one in the
# filtered version).
EVOLVED_ROW, IMPROVED_ROW = 0, 2
INSTRUCTIONS = [EVOLVED, "Skriv en kort opskrift på en æblekage.", BASE[1][0], BASE[2][0]]
STEPS = ["generation-01", "grammar", "quality", "evolution-01", "followups", "annotate"]
SEEDS = ["101", "201", "301", "401", "500", "600"]


def rows(browser: Browser) -> list[int]:
    """The row numbers of the conversations the table shows."""
    listed = browser.find_all("#conversations tbody tr[data-index]")
    return [int(row.get_attribute("data-index")) for row in listed]


def search(browser: Browser, selector: str, text: str, done: str) -> None:
    """Type a search (replacing the last) and wait until it has looked in every file."""
    field = browser.find(selector)
    field.clear()
    field.send_keys(text)
    browser.until(f"document.querySelector('{done}').dataset.done", f"{selector} done")


def check_list(browser: Browser) -> None:
    """The totals, a text search and the filters of the conversations' table."""
    totals = {
        name: browser.text(f"#total-{name}")
        for name in ("conversations", "filtered", "removed", "rejections")
    }
    assert totals == {"conversations": "4", "filtered": "1", "removed": "0", "rejections": "3"}
    assert browser.text("#count") == "4 of 4 conversations"
    assert rows(browser) == [0, 1, 2, 3]
    assert browser.text("#conversations tbody tr td.preview") == EVOLVED
    browser.screenshot("browse-list")

    search(browser, "#search", "GLUTEN", "#search-status")  # case-insensitive
    assert rows(browser) == [EVOLVED_ROW]
    assert browser.text("#count") == "1 of 4 conversations match “GLUTEN”"
    browser.screenshot("browse-search")
    search(browser, "#search", FOLLOWUP[0], "#search-status")  # every conversation's follow-up
    assert rows(browser) == [0, 1, 2, 3]
    browser.find("#reset-filters").click()
    browser.wait(lambda: browser.find("#search").get_attribute("value") == "", "the reset")

    browser.select("#filter-version", "in")
    assert rows(browser) == [IMPROVED_ROW]
    assert browser.text("#count") == "1 of 4 conversations"
    options = browser.js(
        "return [...document.querySelectorAll('#filter-version option')]"
        ".map(option => [option.value, option.text])"
    )
    short = next(value for value, label in options if "min_assistant_words" in label)
    browser.select("#filter-version", short)
    failing = rows(browser)
    assert failing and IMPROVED_ROW not in failing
    assert browser.text("#count") == f"{len(failing)} of 4 conversations"
    for cell in browser.find_all("#conversations tbody tr[data-index] td:last-child"):
        assert "min_assistant_words" in cell.text
    browser.screenshot("browse-filter")
    browser.select("#filter-version", "all")
    operations = browser.js(
        "return [...document.querySelectorAll('#filter-operation option')].map(o => o.value)"
    )
    browser.select("#filter-operation", operations[-1])  # add_constraints
    assert rows(browser) == [EVOLVED_ROW]


def check_conversation(browser: Browser) -> None:
    """A conversation opened from its row (its address survives a reload), and its lineage:
    every step with its model and seed, grammar's correction as a word diff, the evolution."""
    browser.find(f'#conversations tbody tr[data-index="{EVOLVED_ROW}"] td.preview').click()
    opened = f"document.querySelector('#conversation[data-index=\"{EVOLVED_ROW}\"]')"
    browser.until(opened, "the conversation")
    assert browser.driver.current_url.endswith(f"#conversation={EVOLVED_ROW}")
    browser.driver.refresh()
    browser.until(opened, "the conversation after a reload")
    messages = browser.find_all("#messages .message")
    roles = [message.get_attribute("data-role") for message in messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    texts = [message.find_element("css selector", ".text").text for message in messages]
    assert texts[0] == EVOLVED and texts[2] == FOLLOWUP[0]
    assert f"Conversation {EVOLVED_ROW}" in browser.text("#conversation-title")
    assert "add_constraints" in browser.text("#conversation-meta")
    browser.screenshot("browse-conversation")

    browser.find("#show-lineage").click()
    browser.until("!document.querySelector('#lineage').hidden", "the lineage")
    events = browser.js(
        "return [...document.querySelectorAll('#lineage li.event')].map(event => ["
        "event.dataset.step, event.querySelector('.event-model').textContent,"
        "event.querySelector('.event-seed').textContent])"
    )
    assert events == [[step, "tiny", seed] for step, seed in zip(STEPS, SEEDS, strict=True)]
    assert browser.find_all('#lineage li.event[data-step="generation-01"] details.shots li')
    grammar = '#lineage li.event[data-step="grammar"]'
    assert [mark.text for mark in browser.find_all(f"{grammar} ins")] == ["kort", "en"]
    assert not browser.find_all(f"{grammar} del")
    evolution = '#lineage li.event[data-step="evolution-01"]'
    assert browser.text(f"{evolution} .event-operation") == "add_constraints"
    assert "uden gluten, og forklar hvert trin" in browser.text(f"{evolution} ins")
    assert browser.find_all('#lineage li.event[data-step="followups"] .kinds .chip')
    browser.js(f"document.querySelector('{grammar}').scrollIntoView()")
    browser.screenshot("browse-lineage")


def check_rejections(browser: Browser) -> None:
    """Where the data went: the steps, then the rejections by step, reason and text."""
    browser.find("#tab-rejections").click()
    count = "#rejections-count"
    browser.until(f"document.querySelector('{count}').dataset.done", "the rejections")
    assert browser.text(count) == "3 rejections"
    steps = browser.find_all("#steps tbody tr[data-step]")
    assert [row.get_attribute("data-step") for row in steps] == STEPS
    assert "near_duplicate 1" in steps[0].text and "not_harder 1" in steps[3].text
    browser.select("#rejections-step", "generation-01")
    browser.wait(lambda: browser.text(count) == "2 of 3 rejections", "a step's rejections")
    browser.select("#rejections-reason", "near_duplicate")
    browser.wait(lambda: browser.text(count) == "1 of 3 rejections match", "a reason's")
    listed = browser.find_all("#rejections-list li.reject")
    assert [item.get_attribute("data-reason") for item in listed] == ["near_duplicate"]
    assert "the step's merge" in listed[0].text
    browser.select("#rejections-reason", "")
    search(browser, "#rejections-search", "numbered task", count)  # no_tasks: a shard's
    assert browser.text(count) == "1 of 3 rejections match"
    assert "no_tasks" in browser.text("#rejections-list")
    browser.screenshot("browse-rejections")


def check_map(browser: Browser) -> None:
    """The map: hovering a point shows its instruction, a click opens its conversation."""
    browser.find("#tab-map").click()
    browser.until("document.querySelector('#map').dataset.ready", "the map")
    assert browser.text("#map-note") == "4 instructions shown; colour: domain"
    legend = [item.text.split("\n")[0] for item in browser.find_all("#map-legend li")]
    assert legend == ["madlavning"]
    x, y = browser.js("return LB.mapPosition(0)")
    canvas = browser.find("#map canvas")
    width, height = canvas.size["width"], canvas.size["height"]
    pointer = ActionChains(browser.driver)
    pointer.move_to_element_with_offset(canvas, round(x - width / 2), round(y - height / 2))
    pointer.perform()
    browser.until("!document.querySelector('#map-tooltip').hidden", "the tooltip")
    instruction, about = browser.text("#map-tooltip").split("\n")
    row = int(about.removeprefix("conversation ").split(" ")[0])
    assert instruction == INSTRUCTIONS[row].split("\n")[0]
    browser.screenshot("browse-map")
    ActionChains(browser.driver).click().perform()
    browser.until(f"document.querySelector('#conversation[data-index=\"{row}\"]')", "its page")
    assert browser.text("#messages .message .text").startswith(INSTRUCTIONS[row])


def test_browse_page(tmp_path: Path) -> None:
    require_browser()  # before building the run
    store, config = lineage_run(tmp_path)
    index = write_browse(store, config, tmp_path / "export", log=lambda _: None).index
    with chromium(artifact_dir(tmp_path)) as browser:
        browser.open(index)
        browser.until("document.documentElement.dataset.ready", "the table")
        check_list(browser)
        check_conversation(browser)
        check_rejections(browser)
        check_map(browser)
        assert browser.errors() == []
