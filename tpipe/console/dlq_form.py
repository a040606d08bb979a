"""The DLQ page's questions as ``consumers.dlq``'s own: a ``DlqFilter`` from the filters (worker, error
type, window of dead-letter time, VIN) or from the dead letters ticked, and a redrive target.

Targets are ``tpipe dlq redrive``'s: each record's source topic (the default), another topic, or one of
the receivers the console knows (``--console-webhook-url``, default ``<--receiver-url>/webhook``) —
the only target a webhook body the receiver could not parse can take. A receiver needs a token: the
one typed on the page, else ``--replay-token`` / ``TPIPE_REPLAY_TOKEN``; it is never shown or logged.
A value that does not hold raises ``UsageError`` with a one-line reason the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import FormData

from consumers.dlq.reader import DlqFilter, parse_position
from consumers.errors import UsageError
from consumers.replay.sinks import UrlSink
from plumbing.logs import register_secret
from schemas.times import now_ms, parse_time_ms
from tpipe.console.replay_form import TOPIC_NAME
from tpipe.console.settings import ConsoleSettings

__all__ = ["FILTER_FIELDS", "RedriveSpec", "filter_of", "redrive_spec_of", "selected_filter"]

FILTER_FIELDS = ("worker", "error_type", "since", "until", "vin")


def filter_of(values: Mapping[str, str]) -> tuple[DlqFilter, dict[str, str]]:
    """The filter of ``values`` (a query string or a form) and the values as typed, to show again.

    ``since`` / ``until`` bound the dead-letter time (ISO, epoch ms, or 2h, 7d: ago); empty: no bound."""
    typed = {k: str(values.get(k) or "").strip() for k in FILTER_FIELDS}
    now = now_ms()
    try:
        from_ms = parse_time_ms(typed["since"], now=now) if typed["since"] else None
        to_ms = parse_time_ms(typed["until"], now=now) if typed["until"] else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    vins = frozenset(v for v in re.split(r"[\s,]+", typed["vin"]) if v)
    flt = DlqFilter(frozenset([typed["worker"]]) if typed["worker"] else frozenset(),
                    frozenset([typed["error_type"]]) if typed["error_type"] else frozenset(),
                    from_ms, to_ms, vins)
    return flt, typed


def selected_filter(form: FormData) -> DlqFilter:
    """The dead letters ticked (``pos`` = ``partition:offset``), or every one matching the filters
    carried by the form when ``scope`` is ``matching``."""
    if form.get("scope") == "matching":
        return filter_of({k: str(form.get(k) or "") for k in FILTER_FIELDS})[0]
    positions = set()
    for text in form.getlist("pos"):
        pos = parse_position(str(text))
        if pos is None:
            raise UsageError(f"not a dead letter's position: {text!r}")
        positions.add(pos)
    if not positions:
        raise UsageError("tick the dead letters to redrive (or redrive every one matching the filters)")
    return DlqFilter(positions=frozenset(positions))


@dataclass(frozen=True, slots=True)
class RedriveSpec:
    """A redrive: which dead letters, where to, and whether to send again what was redriven before."""

    flt: DlqFilter
    to_topic: str | None = None
    url: str | None = None  # a receiver's webhook URL
    token: str | None = None  # never shown
    force: bool = False

    @property
    def shown(self) -> str:
        if self.url is not None:
            return f"url {self.url_sink().shown_url}"
        return f"topic {self.to_topic}" if self.to_topic else "each record's source topic"

    def url_sink(self) -> UrlSink:
        assert self.url is not None
        return UrlSink(self.url, self.token)

    def only(self, positions: frozenset[tuple[int, int]]) -> RedriveSpec:
        """The same redrive of exactly ``positions`` (what a dry run found to send)."""
        return RedriveSpec(DlqFilter(positions=positions), self.to_topic, self.url, self.token, self.force)


def redrive_spec_of(form: FormData, settings: ConsoleSettings) -> RedriveSpec:
    flt = selected_filter(form)
    target = str(form.get("target") or "source")
    force = form.get("force") == "on"
    if target == "source":
        return RedriveSpec(flt, force=force)
    if target == "topic":
        topic = str(form.get("topic") or "").strip()
        if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
            raise UsageError(f"not a Kafka topic name: {topic!r}")
        return RedriveSpec(flt, to_topic=topic, force=force)
    urls = settings.webhook_urls()
    index = target.removeprefix("receiver:")
    if not index.isdigit() or int(index) >= len(urls):
        raise UsageError(f"no such target: {target!r}")
    typed = str(form.get("token") or "").strip() or None
    token = typed or (settings.replay_token.get_secret_value() if settings.replay_token else None)
    register_secret(token)
    return RedriveSpec(flt, url=urls[int(index)], token=token, force=force)
