"""The browser of the console's tests: Debian's chromium, started once per module (not per session:
Playwright's sync API keeps an event loop running in the test thread while it is up, where the
other modules' ``asyncio.run`` would refuse to start), and a fresh context (cookies, viewport) per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.support.console import browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with browser() as b:
        yield b


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.on("dialog", lambda d: d.accept())
    try:
        yield pg
    finally:
        context.close()
