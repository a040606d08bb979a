"""The Overview's verdict in plain words, from the latest samples of the receivers and of Kafka.

Red: something is losing time against Teslemetry's 24-hour rule or events are not reaching Kafka
(Kafka unreachable, a receiver down, not ready or answering 5xx, a receiver that cannot publish).
Amber: something to look at (4xx answers, events waiting in a spool, a worker group without members
or behind, new dead letters). Green: "all events reach Kafka within 2 s".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from tpipe.console.kafka_view import KafkaWatch
from tpipe.console.receivers import WINDOW_S, ReceiverWatch

__all__ = ["Verdict", "verdict"]

FAST_S = 2.0  # "within 2 s": the oldest spooled body is younger than this
LAG_WARN = 10_000  # records a worker group may be behind before it is pointed out


@dataclass(slots=True)
class Verdict:
    level: str  # "green", "amber", "red"
    headline: str
    problems: list[tuple[str, str]] = field(default_factory=list)  # (level, sentence)


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def span(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} days"


def verdict(receivers: list[ReceiverWatch], kafka: KafkaWatch, now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    problems: list[tuple[str, str]] = []
    ages = [float(a) for r in receivers if (a := r.spool().get("oldest_age_s")) is not None]
    oldest = max(ages, default=0.0)
    snap = kafka.latest()
    if snap is None:
        problems.append(("amber", "the console has not sampled Kafka yet"))
    elif not snap.reachable:
        since = kafka.unreachable_since or snap.at
        cause = f"Kafka unreachable since {clock(since)} UTC"
        if oldest > 0:
            problems.append(("red", f"spool growing for {span(oldest)}: {cause}"))
        else:
            problems.append(("red", f"{cause} ({snap.error})"))
    for r in receivers:
        _receiver_problems(r, now, problems, kafka_ok=bool(snap and snap.reachable))
    if snap is not None and snap.reachable:
        if oldest > FAST_S:
            problems.append(("amber", f"events wait up to {span(oldest)} in a spool before Kafka takes them"))
        for g in snap.groups:
            if g.members == 0:
                problems.append(("amber", f"worker group {g.group} has no running worker ({g.state}); "
                                          f"{g.lag:,} records wait"))
            elif g.lag > LAG_WARN:
                problems.append(("amber", f"worker group {g.group} is {g.lag:,} records behind"))
        grew = _dlq_growth(kafka, WINDOW_S)
        if grew > 0:
            reason = snap.dlq_newest.reason if snap.dlq_newest else "?"
            problems.append(("amber", f"{grew:,} new dead letters in the last {span(WINDOW_S)}; newest: {reason}"))
    level = "red" if any(lv == "red" for lv, _ in problems) else "amber" if problems else "green"
    if problems:
        headline = next(p for lv, p in problems if lv == level)
    elif not receivers:
        headline = "no receiver configured (--receiver-url)"
    else:
        headline = f"all events reach Kafka within {max(FAST_S, math.ceil(oldest)):.0f} s"
    return Verdict(level, headline, problems)


def _receiver_problems(r: ReceiverWatch, now: float, problems: list[tuple[str, str]], *, kafka_ok: bool) -> None:
    latest = r.latest()
    if latest is None:
        problems.append(("amber", f"receiver {r.url} not sampled yet"))
        return
    if not latest.reachable:
        since = r.unreachable_since() or latest.at
        problems.append(("red", f"receiver {r.url} not answering since {clock(since)} UTC ({latest.error})"))
        return
    st = latest.status
    if not latest.ready:
        stall = (st.get("forwarder") or {}).get("stall") or {}
        spool = st.get("spool") or {}
        why = stall.get("reason") or ("spool not writable: " + str(spool.get("last_write_error"))
                                      if spool and not spool.get("writable") else "not accepting")
        problems.append(("red", f"receiver {r.url} not ready: {why}"))
    broker = st.get("broker") or {}
    if kafka_ok and broker and broker.get("up") is False and (st.get("spool") or {}).get("pending_events"):
        problems.append(("red", f"receiver {r.url} cannot publish to Kafka: {broker.get('last_error') or 'no ack'}"))
    answers = r.answers_recently()
    if answers["5xx"]:
        problems.append(("red", f"receiver {r.url} answered {answers['5xx']} webhooks with 5xx in the last "
                                f"{span(WINDOW_S)}"))
    if answers["4xx"]:
        problems.append(("amber", f"receiver {r.url} refused {answers['4xx']} webhooks (4xx) in the last "
                                  f"{span(WINDOW_S)}"))


def _dlq_growth(kafka: KafkaWatch, window_s: float) -> int:
    ok = [s for s in kafka.history if s.reachable]
    if len(ok) < 2:
        return 0
    last = ok[-1]
    base = next((s for s in ok if s.at >= last.at - window_s), ok[0])
    return max(last.dlq_records - base.dlq_records, 0)
