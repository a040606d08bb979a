"""The console's pages, in the navigation's order. Each module has ``TITLE``, ``PATH`` and
``routes(console) -> list[Route]``. The DLQ and Replay pages (on ``tpipe dlq`` and ``tpipe replay``'s
own code) are added here as modules of their own."""

from __future__ import annotations

from tpipe.console.pages import alerts, credits, events, overview, tokens, vehicle

PAGES = (overview, events, vehicle, alerts, credits, tokens)
