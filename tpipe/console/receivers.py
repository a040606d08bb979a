"""Each receiver as the console sees it: its ``/readyz`` and ``/metrics``, sampled every few seconds.

``ReceiverWatch`` keeps the recent samples of one receiver (its base URL: with ``--ops-port`` the ops
port's) and derives what the Overview shows: ready or not (and why), spool depth and the oldest
body's age, the forwarder and broker status, answers by class (2xx/4xx/5xx) over the last minutes,
and when a non-2xx answer was last given — Teslemetry disables a webhook after 24 hours without a
2xx, so the age of the last non-2xx (and whether non-2xx answers continue) is what to watch.
Counters come from Prometheus' own text parser (``prometheus_client.parser``).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ReceiverSample", "ReceiverWatch", "parse_counters"]

#: counters read from /metrics, summed by (metric, label value)
_COUNTED = {"tpipe_http_requests_total": "status", "tpipe_events_accepted_total": "type"}
WINDOW_S = 300.0  # "the last minutes" of answers by class
_KEEP_S = 900.0


def parse_counters(text: str) -> dict[tuple[str, str], float]:
    """``{(metric, label value): value}`` of the counters the console reads."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = _COUNTED.get(sample.name)
            if label is not None and label in sample.labels:
                key = (sample.name, sample.labels[label])
                out[key] = out.get(key, 0.0) + float(sample.value)
    return out


@dataclass(slots=True)
class ReceiverSample:
    at: float  # wall clock (s)
    reachable: bool
    error: str | None = None
    ready: bool | None = None
    status: dict[str, Any] = field(default_factory=dict)  # the /readyz JSON
    counters: dict[tuple[str, str], float] = field(default_factory=dict)

    def answers(self, klass: str) -> float:
        """Webhook answers of a class (``2``, ``4``, ``5``) counted since the receiver started."""
        return sum(v for (m, status), v in self.counters.items()
                   if m == "tpipe_http_requests_total" and status.startswith(klass))

    def non_2xx(self) -> float:
        return sum(v for (m, status), v in self.counters.items()
                   if m == "tpipe_http_requests_total" and not status.startswith("2"))


class ReceiverWatch:
    """The samples of one receiver and what they say."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.samples: deque[ReceiverSample] = deque()
        self.watching_since = time.time()
        self.last_non_2xx_at: float | None = None  # when the console saw the non-2xx count grow
        self.non_2xx_before_watch: float | None = None  # non-2xx answers given before the console looked

    async def sample(self, client: httpx.AsyncClient, timeout_s: float) -> ReceiverSample:
        now = time.time()
        try:
            ready = await client.get(self.url + "/readyz", timeout=timeout_s)
            metrics = await client.get(self.url + "/metrics", timeout=timeout_s)
            status = ready.json()
            s = ReceiverSample(now, True, None, ready.status_code == 200, status, parse_counters(metrics.text))
        except (httpx.HTTPError, ValueError) as exc:
            s = ReceiverSample(now, False, f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__)
        self._add(s)
        return s

    def _add(self, s: ReceiverSample) -> None:
        prev = self.latest_reachable()
        if s.reachable:
            if prev is None:
                if self.non_2xx_before_watch is None:
                    self.non_2xx_before_watch = s.non_2xx()
            elif s.non_2xx() > prev.non_2xx() or s.non_2xx() < prev.non_2xx() and s.non_2xx() > 0:
                self.last_non_2xx_at = s.at  # grew (or the receiver restarted and has given some already)
        self.samples.append(s)
        while self.samples and self.samples[0].at < s.at - _KEEP_S:
            self.samples.popleft()

    def latest(self) -> ReceiverSample | None:
        return self.samples[-1] if self.samples else None

    def latest_reachable(self) -> ReceiverSample | None:
        for s in reversed(self.samples):
            if s.reachable:
                return s
        return None

    def answers_recently(self, window_s: float = WINDOW_S) -> dict[str, int]:
        """2xx/4xx/5xx answers over the last ``window_s`` (or since the console began watching)."""
        reachable = [s for s in self.samples if s.reachable]
        if not reachable:
            return {"2xx": 0, "4xx": 0, "5xx": 0}
        last = reachable[-1]
        base = next((s for s in reachable if s.at >= last.at - window_s), reachable[0])
        out = {}
        for klass in ("2", "4", "5"):
            delta = last.answers(klass) - base.answers(klass)
            out[f"{klass}xx"] = int(delta if delta >= 0 else last.answers(klass))  # a restart resets counters
        return out

    def spool(self) -> dict[str, Any]:
        s = self.latest_reachable()
        return dict(s.status.get("spool") or {}) if s is not None else {}

    def unreachable_since(self) -> float | None:
        """When the receiver stopped answering (None while it answers)."""
        since = None
        for s in reversed(self.samples):
            if s.reachable:
                break
            since = s.at
        return since
