"""The console's pages, in the navigation's order. Each module has ``TITLE``, ``PATH`` and
``routes(console) -> list[Route]``."""

from __future__ import annotations

from tpipe.console.pages import alerts, credits, dlq, events, overview, replay, tokens, vehicle

PAGES = (overview, events, vehicle, alerts, credits, dlq, replay, tokens)
