"""Headless Chromium for the tests of the browse page, through Selenium and offline.

``make browser`` (a prerequisite of ``make test``) installs Debian's ``chromium`` and
``chromium-driver``; ``make test`` sets ``LAEREBOGEN_BROWSER_TESTS=required``, so a missing
browser fails the browser tests instead of skipping them. Elsewhere they are skipped without
one, and ``LAEREBOGEN_BROWSER_TESTS=skip`` always skips them. ``LAEREBOGEN_CHROMIUM`` and
``LAEREBOGEN_CHROMEDRIVER`` point at another browser and its driver.

Selenium is given both paths, so Selenium Manager (which downloads drivers) never runs; with
``SE_OFFLINE`` set it would refuse the network anyway.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path(os.environ.get("LAEREBOGEN_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LAEREBOGEN_CHROMEDRIVER", "/usr/bin/chromedriver"))
WINDOW = (1400, 1000)  # pixels: every screenshot has this size
ARTIFACTS = "LAEREBOGEN_TEST_ARTIFACTS"  # a directory for screenshots, kept after the tests

T = TypeVar("T")


def require_browser() -> None:
    """Return when Chromium and its driver are installed; else fail (when required) or skip."""
    mode = os.environ.get("LAEREBOGEN_BROWSER_TESTS", "")
    if mode == "skip":
        pytest.skip("browser tests are switched off (LAEREBOGEN_BROWSER_TESTS=skip)")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    reason = (
        f"no headless browser: {' and '.join(missing)} missing; `make browser` installs Debian's "
        "chromium and chromium-driver (or set LAEREBOGEN_CHROMIUM and LAEREBOGEN_CHROMEDRIVER)"
    )
    if mode == "required":
        pytest.fail(f"{reason} (LAEREBOGEN_BROWSER_TESTS=required)", pytrace=False)
    pytest.skip(reason)


def artifact_dir(tmp_path: Path) -> Path:
    """Where a test saves its screenshots: $LAEREBOGEN_TEST_ARTIFACTS, else tmp_path/screenshots."""
    directory = Path(os.environ.get(ARTIFACTS) or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class Browser:
    """A headless Chromium page with the console's messages collected and screenshots saved."""

    driver: Any  # selenium.webdriver.Chrome
    screenshots: Path
    console: list[dict] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)

    def open(self, path: Path) -> None:
        """Open a local file (file:// URL, no server)."""
        self.driver.get(path.absolute().as_uri())

    def js(self, script: str, *args: object) -> Any:
        """Run JavaScript in the page (``return`` gives a value back)."""
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], T], what: str, timeout: float = 10.0) -> T:
        """Poll ``condition`` until it gives a true value; fail saying ``what`` was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                self.screenshot(f"timeout-{what}")
                errors = "; ".join(entry["message"] for entry in self.errors())
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}"
                    + (f" (console errors: {errors})" if errors else "")
                )
            time.sleep(0.05)

    def until(self, expression: str, what: str, timeout: float = 10.0) -> Any:
        """Wait until a JavaScript expression is true in the page; its value."""
        return self.wait(lambda: self.js(f"return {expression}"), what, timeout)

    def text(self, selector: str) -> str:
        """The visible text of the first element that matches a CSS selector ('' if none)."""
        return self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            selector,
        )

    def find(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def select(self, selector: str, value: str) -> None:
        """Choose the option of a <select> by its value, as a user would (a change event)."""
        from selenium.webdriver.support.ui import Select

        Select(self.find(selector)).select_by_value(value)

    def screenshot(self, name: str) -> Path:
        """Save the viewport as <screenshots>/<name>.png and print its path."""
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.saved.append(path)
        print(f"screenshot: {path}")
        return path

    def collect_console(self) -> list[dict]:
        """Every console message so far (Chromium hands each one out once)."""
        self.console.extend(self.driver.get_log("browser"))
        return self.console

    def errors(self) -> list[dict]:
        """The console's errors so far: uncaught exceptions, console.error, failed loads."""
        return [entry for entry in self.collect_console() if entry.get("level") == "SEVERE"]


def chrome_options(window: tuple[int, int] = WINDOW) -> Any:
    """Options for headless Chromium in a container, as root, offline."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container: no user namespaces for the sandbox
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        f"--window-size={window[0]},{window[1]}",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextmanager
def chromium(screenshots: Path, window: tuple[int, int] = WINDOW) -> Iterator[Browser]:
    """Headless Chromium with its driver from the system (never from the network)."""
    require_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=chrome_options(window))
    try:
        driver.set_page_load_timeout(30)
        yield Browser(driver, screenshots)
    finally:
        driver.quit()
