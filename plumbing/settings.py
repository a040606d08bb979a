"""Configuration shared by every tpipe process: Kafka connection and security, topics, logging.

Each field is also an environment variable with the ``TPIPE_`` prefix (``TPIPE_KAFKA``,
``TPIPE_TOPIC_PREFIX``, ``TPIPE_KAFKA_SASL_PASSWORD`` ...). Command-line flags override them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How to reach Kafka. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="TPIPE_", extra="ignore")

    kafka: str = Field("127.0.0.1:9092", description="bootstrap servers, comma separated")
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_client_id: str = "tpipe"
    kafka_lz4_level: int = Field(
        1, ge=0, le=12,
        description="LZ4 level of the batches tpipe produces: 1 is LZ4's fast mode (aiokafka alone would use "
        "level 9, LZ4 HC: 3-4x the CPU per batch for a few percent smaller batches)",
    )

    topic_prefix: str = "teslemetry"
    topic_partitions: int = Field(3, ge=1)
    topic_replication_factor: int = Field(1, ge=1)
    topic_retention_ms: int | None = Field(
        None, description="retention.ms for topics tpipe creates (None: the broker's default)"
    )
    topic_max_message_bytes: int = Field(
        8 << 20, ge=1 << 20,
        description="max.message.bytes for topics tpipe creates (room for the largest accepted webhook body)",
    )
