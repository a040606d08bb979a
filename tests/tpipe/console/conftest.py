"""The browser the console's tests share: Debian's chromium, started once per session, and a fresh
context (cookies, viewport) per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.support.console import browser


@pytest.fixture(scope="session")
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
