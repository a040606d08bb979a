"""The Overview's verdict from samples: receivers answered through httpx's mock transport (their
``/readyz`` JSON and ``/metrics`` text as a receiver gives them), Kafka snapshots as the sampler keeps
them. Each rule of ``tpipe.console.verdict`` in plain words, and the time spans it prints."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from plumbing.settings import KafkaSettings
from tpipe.console.kafka_view import DeadLetterNote, GroupLag, KafkaSnapshot, KafkaWatch
from tpipe.console.receivers import ReceiverWatch
from tpipe.console.verdict import clock, span, verdict

NOW = 1_800_000_000.0


def _ready(oldest_age_s: float | None = 0.2, **extra: Any) -> dict[str, Any]:
    return {"durability": "spool", "spool": {"pending_events": 0 if not oldest_age_s else 40,
                                             "oldest_age_s": oldest_age_s, "writable": True},
            "forwarder": {"mode": "process", "restarts": 0}, "broker": {"up": True}, **extra}


def _metrics(ok: int = 10, refused: int = 0, failed: int = 0) -> str:
    return (f'tpipe_http_requests_total{{status="202"}} {ok}\n'
            f'tpipe_http_requests_total{{status="401"}} {refused}\n'
            f'tpipe_http_requests_total{{status="503"}} {failed}\n')


def _receiver(*samples: tuple[int, dict[str, Any], str] | None) -> ReceiverWatch:
    """A receiver watched through ``samples``: (readyz status, readyz JSON, /metrics), None = not answering."""
    watch = ReceiverWatch("http://receiver:8080")

    async def sample_all() -> None:
        for s in samples:
            def answer(request: httpx.Request, s: tuple[int, dict[str, Any], str] | None = s) -> httpx.Response:
                if s is None:
                    raise httpx.ConnectError("connection refused", request=request)
                return httpx.Response(s[0], json=s[1]) if request.url.path == "/readyz" else httpx.Response(200,
                                                                                                          text=s[2])
            async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
                await watch.sample(client, 1.0)

    asyncio.run(sample_all())
    return watch


def _kafka(*snaps: KafkaSnapshot, unreachable_since: float | None = None) -> KafkaWatch:
    watch = KafkaWatch(KafkaSettings(kafka="localhost:9", topic_prefix="t"), ["t.telemetry"])
    watch.history.extend(snaps)
    watch.unreachable_since = unreachable_since
    return watch


def _up(at: float = NOW, lag: int = 0, members: int = 1, dlq: int = 0) -> KafkaSnapshot:
    return KafkaSnapshot(at, True, groups=[GroupLag("t.telemetry", "Stable", members, lag, 3)], dlq_records=dlq,
                         dlq_newest=DeadLetterNote("payload is not JSON", "DecodeError", "telemetry", None, "t.dlq", 0,
                                                   dlq - 1) if dlq else None)


def test_all_well_is_green_and_says_kafka_takes_events_within_2_s() -> None:
    v = verdict([_receiver((200, _ready(0.3), _metrics()))], _kafka(_up()), NOW)
    assert (v.level, v.headline, v.problems) == ("green", "all events reach Kafka within 2 s", [])


def test_kafka_down_with_a_growing_spool_is_red_and_says_since_when() -> None:
    down_since = NOW - 720
    kafka = _kafka(_up(NOW - 730), KafkaSnapshot(NOW, False, "KafkaConnectionError: refused"),
                   unreachable_since=down_since)
    v = verdict([_receiver((503, _ready(720.0, broker={"up": False}), _metrics()))], kafka, NOW)
    assert v.level == "red"
    assert v.headline == f"spool growing for 12 min: Kafka unreachable since {clock(down_since)} UTC"
    empty = verdict([_receiver((200, _ready(None), _metrics()))], kafka, NOW)
    assert empty.headline == f"Kafka unreachable since {clock(down_since)} UTC (KafkaConnectionError: refused)"


def test_a_receiver_down_not_ready_or_answering_5xx_is_red() -> None:
    gone = _receiver((200, _ready(), _metrics()), None)
    v = verdict([gone], _kafka(_up()), NOW)
    assert v.level == "red" and v.headline.startswith("receiver http://receiver:8080 not answering since ")
    assert "ConnectError" in v.headline

    stalled = _ready(5.0, forwarder={"mode": "process", "restarts": 3, "stall": {"reason": "forwarder stuck"}})
    v = verdict([_receiver((503, stalled, _metrics()))], _kafka(_up()), NOW)
    assert ("red", "receiver http://receiver:8080 not ready: forwarder stuck") in v.problems

    v = verdict([_receiver((200, _ready(), _metrics(failed=1)), (200, _ready(), _metrics(failed=4)))],
                _kafka(_up()), NOW)
    assert v.level == "red" and "answered 3 webhooks with 5xx" in v.headline


def test_refusals_a_slow_spool_idle_workers_lag_and_new_dead_letters_are_amber() -> None:
    v = verdict([_receiver((200, _ready(), _metrics(refused=1)), (200, _ready(), _metrics(refused=3)))],
                _kafka(_up()), NOW)
    assert (v.level, v.headline) == ("amber", "receiver http://receiver:8080 refused 2 webhooks (4xx) in the last "
                                              "5 min")
    v = verdict([_receiver((200, _ready(45.0), _metrics()))], _kafka(_up()), NOW)
    assert v.headline == "events wait up to 45 s in a spool before Kafka takes them"
    v = verdict([_receiver((200, _ready(), _metrics()))], _kafka(_up(members=0, lag=12)), NOW)
    assert v.headline == "worker group t.telemetry has no running worker (Stable); 12 records wait"
    v = verdict([_receiver((200, _ready(), _metrics()))], _kafka(_up(lag=25_000)), NOW)
    assert v.headline == "worker group t.telemetry is 25,000 records behind"
    v = verdict([_receiver((200, _ready(), _metrics()))], _kafka(_up(NOW - 60, dlq=2), _up(NOW, dlq=7)), NOW)
    assert v.headline == "5 new dead letters in the last 5 min; newest: payload is not JSON"
    assert [lv for lv, _ in v.problems] == ["amber"]


def test_the_worst_problem_is_the_headline_and_every_one_is_listed() -> None:
    v = verdict([_receiver((200, _ready(), _metrics()), (200, _ready(), _metrics(refused=2, failed=1)))],
                _kafka(_up(lag=25_000)), NOW)
    assert v.level == "red" and "5xx" in v.headline
    assert [lv for lv, _ in v.problems] == ["red", "amber", "amber"]


def test_nothing_to_watch_or_not_sampled_yet() -> None:
    assert verdict([], _kafka(_up()), NOW).headline == "no receiver configured (--receiver-url)"
    v = verdict([ReceiverWatch("http://r")], _kafka(), NOW)
    assert v.level == "amber" and [p for _, p in v.problems] == ["the console has not sampled Kafka yet",
                                                                 "receiver http://r not sampled yet"]


@pytest.mark.parametrize(("seconds", "text"), [(-3, "0 s"), (0, "0 s"), (119.9, "119 s"), (120, "2 min"),
                                               (7199, "119 min"), (7200, "2 h 0 min"), (90_061, "25 h 1 min"),
                                               (172_800, "2 days")])
def test_spans_read_as_words(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_clock_is_utc() -> None:
    assert clock(0) == "00:00:00" and clock(3723.9) == "01:02:03"
