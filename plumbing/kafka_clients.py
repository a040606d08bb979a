"""The one place that builds Kafka client configuration (producer, consumer, admin).

Every process (receiver, forwarder, workers, replay, CLI tools) gets its clients from here, so
security settings, client ids and delivery guarantees are decided once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import InvalidConfigurationError, TopicAlreadyExistsError, for_code

from plumbing.errors import TopicsNotCreatedError
from plumbing.settings import KafkaSettings

log = logging.getLogger("tpipe.kafka")


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
        # one record as large as the topics tpipe creates take (see topic_configs), plus headroom
        max_request_size=max(4 << 20, s.topic_max_message_bytes + (64 << 10)),
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


def use_lz4_level(level: int) -> None:
    """Compress produced batches with LZ4 ``level``, for every producer of this process.

    aiokafka compresses each batch with ``aiokafka.codec.lz4_encode(payload)``, whose level defaults
    to 9 (LZ4 HC), and takes no option for it; its record builders (the C one and the pure-Python
    fallback) look the function up in their module at every batch, so it is set there. Measured on
    the bench corpus: 7.1 -> 1.5 µs for a batch of one 0.5 KB record, 20 -> 6 µs for a 20 KB batch,
    batches ~6 % larger. Consumers read either.
    """
    from aiokafka import codec
    from aiokafka.record import default_records as py_records

    def lz4_encode(payload: Any, level: int = level) -> bytes:
        return bytes(codec.lz4_encode(payload, level=level))

    modules: list[Any] = [py_records]
    try:
        from aiokafka.record._crecords import default_records as c_records

        modules.append(c_records)
    except ImportError:  # pragma: no cover - aiokafka without its C extension
        pass
    for module in modules:
        module.lz4_encode = lz4_encode


def make_producer(s: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    use_lz4_level(s.kafka_lz4_level)
    return AIOKafkaProducer(**producer_config(s, **overrides))


def make_consumer(s: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **consumer_config(s, group_id=group_id, **overrides))


def make_admin(s: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    cfg = common_config(s, role="admin")
    cfg.setdefault("request_timeout_ms", 15_000)
    cfg.update(overrides)
    return AIOKafkaAdminClient(**cfg)


#: Kafka's longest duration: a timestamp bound of this size accepts any event time.
ANY_TIME_MS = str(2**63 - 1)
#: Set on every topic tpipe creates: events carry the car's clock as record timestamp, and a car
#: an hour ahead (Kafka 4 refuses records > 1 h in the future by default) or a backlog drained
#: after a long outage must never be refused for it.
TIMESTAMP_CONFIGS = {
    "message.timestamp.after.max.ms": ANY_TIME_MS,
    "message.timestamp.before.max.ms": ANY_TIME_MS,
}


def fitted_replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) that fit a cluster of ``brokers``: one copy per broker
    up to 3, and writes go on with one copy missing (3 -> 2, 2 -> 1, 1 -> 1)."""
    replication = max(1, min(3, brokers))
    return replication, max(1, min(2, replication - 1))


def topic_configs(s: KafkaSettings, *, min_insync: int | None = None) -> dict[str, str]:
    """The configs every topic tpipe creates gets (retention, size, timestamp bounds, min ISR)."""
    configs = {**TIMESTAMP_CONFIGS, "max.message.bytes": str(s.topic_max_message_bytes)}
    if s.topic_retention_ms is not None:
        configs["retention.ms"] = str(s.topic_retention_ms)
    min_insync = min_insync if min_insync is not None else s.topic_min_insync_replicas
    if min_insync is not None:
        configs["min.insync.replicas"] = str(min_insync)
    return configs


async def topic_replication(s: KafkaSettings, admin: AIOKafkaAdminClient) -> tuple[int, int]:
    """The replication factor and min.insync.replicas for new topics: the settings', the unset ones
    fitted to the brokers the cluster lists now (``fitted_replication``)."""
    rf, min_insync = s.topic_replication_factor, s.topic_min_insync_replicas
    if rf is None or min_insync is None:
        brokers = len((await admin.describe_cluster()).get("brokers") or ()) or 1
        fit_rf, _ = fitted_replication(brokers)
        rf = rf if rf is not None else fit_rf
        min_insync = min_insync if min_insync is not None else fitted_replication(rf)[1]
    if min_insync > rf:
        raise TopicsNotCreatedError(
            f"min.insync.replicas {min_insync} is above the replication factor {rf}: "
            "no write could ever be acknowledged"
        )
    return rf, min_insync


async def ensure_topics(
    s: KafkaSettings,
    names: list[str],
    *,
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
    strict: bool = False,
) -> list[str]:
    """Create the topics that are missing; returns the names created. Safe to call concurrently.

    ``configs`` are added to ``topic_configs`` (e.g. ``cleanup.policy=compact``). Existing topics are
    left as they are (the forwarder adapts to their timestamp bounds). A topic
    Kafka refuses to create (an ACL, a policy, a replication factor above the brokers) raises
    ``TopicsNotCreatedError`` with Kafka's reason when ``strict`` (``tpipe topics create``, which also
    returns only once the brokers list what it created); otherwise (a receiver or worker starting) the
    refusal is logged and the process goes on: the topic may be created by someone else, and a write
    to it fails with Kafka's own error."""
    admin = make_admin(s)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return []
        rf, min_insync = await topic_replication(s, admin)
        configs = {**topic_configs(s, min_insync=min_insync), **(configs or {})}

        def new_topics(topic_names: list[str], cfg: dict[str, str]) -> list[NewTopic]:
            return [
                NewTopic(
                    name=n,
                    num_partitions=partitions or s.topic_partitions,
                    replication_factor=rf,
                    topic_configs=cfg,
                )
                for n in topic_names
            ]

        response = await admin.create_topics(new_topics(missing, configs))
        refused = _config_refusals(response)
        refusals = {n: why for n, why in _refusals(response).items() if n not in refused}
        if refused:  # brokers before Kafka 3.6 lack the timestamp bounds (and accept any time by default)
            older = {k: v for k, v in configs.items() if k not in TIMESTAMP_CONFIGS}
            refusals.update(_refusals(await admin.create_topics(new_topics(refused, older))))
        for name, why in refusals.items():
            if strict:
                raise TopicsNotCreatedError(f"Kafka did not create topic {name}: {why}")
            log.warning("topic not created", extra={"topic": name, "reason": why})
        created = [n for n in missing if n not in refusals]
        if strict:  # a command's next step (``topics list``) must find them; a producer waits by itself
            await _until_listed(admin, created)
        return created
    finally:
        await admin.close()


async def _until_listed(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 10.0) -> None:
    """Until the metadata lists ``names`` with a leader for every partition (the controller created
    them; the brokers learn it a moment later), or ``timeout_s`` (a topic this client may not
    describe never shows). Asks for all topics: naming one would auto-create it where allowed."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    want = set(names)
    while True:
        ready = {
            t["topic"] for t in await admin.describe_topics()
            if t["topic"] in want and t.get("error_code", 0) == 0 and t.get("partitions")
            and all(p["leader"] >= 0 for p in t["partitions"])
        }
        if ready == want or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.1)  # metadata poll interval


def _config_refusals(response: Any) -> list[str]:
    """Topics a CreateTopics response refused for their configs (other errors, such as
    "already exists" from a concurrent creator, are not ours to handle)."""
    out = []
    for entry in getattr(response, "topic_errors", ()):
        name, code = entry[0], entry[1]
        if code and for_code(code) is InvalidConfigurationError:
            out.append(name)
    return out


def _refusals(response: Any) -> dict[str, str]:
    """Topic -> Kafka's reason, for the topics a CreateTopics response did not create (a topic a
    concurrent creator made first counts as created)."""
    out = {}
    for entry in getattr(response, "topic_errors", ()):
        name, code = entry[0], entry[1]
        if not code or for_code(code) is TopicAlreadyExistsError:
            continue
        error = for_code(code).__name__
        out[name] = f"{error}: {entry[2]}" if len(entry) > 2 and entry[2] else error
    return out
