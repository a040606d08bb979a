"""The one place that builds Kafka client configuration (producer, consumer, admin).

Every process (receiver, forwarder, workers, replay, CLI tools) gets its clients from here, so
security settings, client ids and delivery guarantees are decided once.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tpipe.settings import KafkaSettings


def _ssl_context(s: KafkaSettings) -> ssl.SSLContext | None:
    if s.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(cafile=s.kafka_ssl_cafile)
    if s.kafka_ssl_certfile:
        ctx.load_cert_chain(s.kafka_ssl_certfile, s.kafka_ssl_keyfile)
    ctx.check_hostname = s.kafka_ssl_check_hostname
    return ctx


def common_config(s: KafkaSettings, *, role: str) -> dict[str, Any]:
    """Connection and security options every aiokafka client takes."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": s.kafka,
        "client_id": f"{s.kafka_client_id}-{role}",
        "security_protocol": s.kafka_security_protocol,
    }
    ctx = _ssl_context(s)
    if ctx is not None:
        cfg["ssl_context"] = ctx
    if s.kafka_security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = s.kafka_sasl_mechanism or "PLAIN"
        cfg["sasl_plain_username"] = s.kafka_sasl_username
        cfg["sasl_plain_password"] = (
            s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else None
        )
    return cfg


def producer_config(s: KafkaSettings, *, role: str = "producer", **overrides: Any) -> dict[str, Any]:
    """Durable producer: acks=all, idempotent, compressed, small linger."""
    cfg = common_config(s, role=role)
    cfg.update(
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=30_000,
    )
    cfg.update(overrides)
    return cfg


def consumer_config(
    s: KafkaSettings, *, group_id: str | None, role: str = "consumer", **overrides: Any
) -> dict[str, Any]:
    """Consumer that never auto-commits: workers commit after their effects are durable."""
    cfg = common_config(s, role=role)
    cfg.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=2000,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    cfg.update(overrides)
    return cfg


def make_producer(s: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_config(s, **overrides))


def make_consumer(s: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **consumer_config(s, group_id=group_id, **overrides))


def make_admin(s: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    cfg = common_config(s, role="admin")
    cfg.setdefault("request_timeout_ms", 15_000)
    cfg.update(overrides)
    return AIOKafkaAdminClient(**cfg)


async def ensure_topics(s: KafkaSettings, names: list[str], *, partitions: int | None = None) -> list[str]:
    """Create the topics that are missing; returns the names created. Safe to call concurrently."""
    admin = make_admin(s)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return []
        configs: dict[str, str] = {}
        if s.topic_retention_ms is not None:
            configs["retention.ms"] = str(s.topic_retention_ms)
        new = [
            NewTopic(
                name=n,
                num_partitions=partitions or s.topic_partitions,
                replication_factor=s.topic_replication_factor,
                topic_configs=configs,
            )
            for n in missing
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass
        return missing
    finally:
        await admin.close()
