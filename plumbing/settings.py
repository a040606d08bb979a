"""Configuration shared by every tpipe process: Kafka connection and security, topics, logging.

Each field is also an environment variable with the ``TPIPE_`` prefix (``TPIPE_KAFKA``,
``TPIPE_TOPIC_PREFIX``, ``TPIPE_KAFKA_SASL_PASSWORD`` ...). Command-line flags override them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
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

    topic_prefix: str = "teslemetry"
    topic_partitions: int = Field(3, ge=1)
    topic_replication_factor: int | None = Field(
        None, ge=1,
        description="replication factor of topics tpipe creates (default: one copy per broker, at most 3)",
    )
    topic_min_insync_replicas: int | None = Field(
        None, ge=1,
        description="min.insync.replicas of topics tpipe creates (default: the replication factor minus one, "
        "at least 1, at most 2: 3 copies -> 2)",
    )
    topic_retention_ms: int | None = Field(
        None, description="retention.ms for topics tpipe creates (None: the broker's default)"
    )
    topic_max_message_bytes: int = Field(
        8 << 20, ge=1 << 20,
        description="max.message.bytes for topics tpipe creates (room for the largest accepted webhook body)",
    )

    @field_validator("topic_min_insync_replicas")
    @classmethod
    def _min_insync_fits(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A field validator (not a model validator): its error shows this field's input only, never secrets.
        rf = info.data.get("topic_replication_factor")
        if value is not None and rf is not None and value > rf:
            raise ValueError(f"topic_min_insync_replicas {value} is above topic_replication_factor {rf}: "
                             "no write could ever be acknowledged")
        return value
