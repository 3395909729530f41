"""Headless Chromium for the browser tests (`tests/browser/`): Debian's binary with the flags
it needs here, one launch per module, contexts with the suite's timeouts, screenshots under
`test-artifacts/`, and the check every page at a phone's width gets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 10_000


def require_chromium() -> None:
    """At a browser module's top: skip it, saying why, where Chromium is missing (fail on CI,
    which must run the browser tests)."""
    if CHROMIUM.exists():
        return
    missing = f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(missing + "; CI must run the browser tests", pytrace=False)
    pytest.skip(missing, allow_module_level=True)


@contextmanager
def launched() -> Iterator[Browser]:
    """Chromium, headless, until the block ends (a module's `browser` fixture)."""
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(
    browser: Browser, locale: str = "en-US", width: int | None = None, **options: Any
) -> BrowserContext:
    """A fresh browser profile in `locale`, `width` px wide when given, with the timeouts."""
    if width is not None:
        options["viewport"] = {"width": width, "height": 900}
    context = browser.new_context(locale=locale, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def no_sideways_scroll(page: Page, width: int | None = None) -> None:
    """The page is no wider than the window (`width`, else the viewport's): a wide table
    scrolls inside its own box, long words wrap."""
    if width is None:
        assert page.viewport_size is not None
        width = page.viewport_size["width"]
    used = page.evaluate("document.documentElement.scrollWidth")
    assert used <= width, f"{page.url} scrolls sideways: {used}px wide at {width}px"
