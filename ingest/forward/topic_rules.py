"""What each topic accepts — record timestamps and record size — read from the cluster when the
forwarder starts.

Records carry the event's ``created_at`` (the car's clock) as their timestamp. Topics tpipe creates
accept any time (``plumbing.kafka_clients.TIMESTAMP_CONFIGS``); a topic created otherwise may bound it
(Kafka 4's default refuses records more than an hour in the future). Knowing the bounds, the
forwarder stamps such a record with its ``received_at`` instead (header ``timestamp_source``)
before Kafka refuses it, so one car with a wrong clock never costs a refused batch. A refusal the
bounds did not foresee (a config changed since) is handled the same way after the fact.

Likewise ``max.message.bytes``: batches for a topic are cut below it (a topic created with a small
limit would otherwise refuse every batch of many small records), and a single record that cannot
fit goes to the DLQ before Kafka is asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from plumbing import kafka_clients
from plumbing.settings import KafkaSettings

log = logging.getLogger("tpipe.forwarder")

_AFTER = "message.timestamp.after.max.ms"
_BEFORE = "message.timestamp.before.max.ms"
_TYPE = "message.timestamp.type"
_MAX_BYTES = "max.message.bytes"
_NO_BOUND = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TimestampBounds:
    """How far from the broker's clock a record timestamp may be (None: no bound)."""

    after_max_ms: int | None = None
    before_max_ms: int | None = None

    def refuses(self, timestamp_ms: int, now_ms: int) -> bool:
        """True when the topic would (or nearly would) refuse ``timestamp_ms``: a margin of a tenth
        of the bound, at most a minute, covers the time until the broker appends it and clock skew."""
        after, before = self.after_max_ms, self.before_max_ms
        if after is not None and timestamp_ms > now_ms + after - min(after // 10, 60_000):
            return True
        return before is not None and timestamp_ms < now_ms - before + min(before // 10, 60_000)


ANY_TIME = TimestampBounds()

#: room for the record batch header and the producer's own framing below ``max.message.bytes``
BATCH_OVERHEAD = 1024


@dataclass(frozen=True, slots=True)
class TopicRule:
    """What one topic accepts (None: not known, then nothing is checked before Kafka answers)."""

    bounds: TimestampBounds = ANY_TIME
    max_message_bytes: int | None = None

    def batch_bytes(self) -> int | None:
        """The largest batch (uncompressed, conservatively) to build for this topic."""
        m = self.max_message_bytes
        return None if m is None else max(1024, m - BATCH_OVERHEAD)


NO_RULE = TopicRule()


def _bound(value: Any) -> int | None:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    return None if ms < 0 or ms >= _NO_BOUND else ms


def bounds_from_configs(configs: dict[str, str]) -> TimestampBounds:
    if configs.get(_TYPE) == "LogAppendTime":  # the broker stamps records itself: nothing is refused
        return ANY_TIME
    return TimestampBounds(_bound(configs.get(_AFTER)), _bound(configs.get(_BEFORE)))


def rule_from_configs(configs: dict[str, str]) -> TopicRule:
    size = configs.get(_MAX_BYTES)
    return TopicRule(bounds_from_configs(configs), int(size) if size and size.isdigit() else None)


async def load_topic_rules(settings: KafkaSettings, topics: list[str]) -> dict[str, TopicRule]:
    """Each topic's rule; a topic that cannot be described (ACLs, old broker) gets none, and the
    forwarder falls back to handling a refusal when it comes."""
    admin = kafka_clients.make_admin(settings)
    out: dict[str, TopicRule] = {}
    try:
        await admin.start()
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, {_AFTER: None, _BEFORE: None, _TYPE: None, _MAX_BYTES: None})
                     for t in topics]
        for response in await admin.describe_configs(resources):
            for res in response.resources:
                error_code, name, entries = res[0], res[3], res[4]
                if error_code:
                    continue
                configs = {e[0]: e[1] for e in entries if e[1] is not None}
                out[name] = rule_from_configs(configs)
    except Exception as exc:  # never fatal: the refusal path covers what we could not read
        log.warning("could not read the topics' configs", extra={"error": f"{type(exc).__name__}: {exc}"})
    finally:
        await admin.close()
    bounded = {t: r.bounds for t, r in out.items() if r.bounds != ANY_TIME}
    if bounded:
        log.debug("topics bound record timestamps; out-of-bound events get their receive time",
                  extra={"topics": {t: [b.before_max_ms, b.after_max_ms] for t, b in bounded.items()}})
    return out
