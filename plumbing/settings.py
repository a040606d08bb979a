"""Configuration shared by every tpipe process: Kafka connection and security, topics, logging.

Each field is also an environment variable with the ``TPIPE_`` prefix (``TPIPE_KAFKA``,
``TPIPE_TOPIC_PREFIX``, ``TPIPE_KAFKA_SASL_PASSWORD`` ...). Command-line flags override them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How to reach Kafka. Secrets are ``SecretStr`` so they never print (nor show in ``--help``)."""

    model_config = SettingsConfigDict(env_prefix="TPIPE_", extra="ignore")
    #: title of these options in ``--help`` (``plumbing.cli_settings``)
    cli_group: ClassVar[str] = "Kafka connection and topics"

    kafka: str = Field("127.0.0.1:9092", description="bootstrap servers, comma separated",
                       json_schema_extra={"metavar": "HOST:PORT"})
    kafka_security_protocol: SecurityProtocol = Field("PLAINTEXT", description="how clients connect")
    kafka_sasl_mechanism: SaslMechanism | None = Field(None, description="SASL mechanism (SASL_* protocols; PLAIN if unset)")
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle to verify the brokers (SSL protocols)")
    kafka_ssl_certfile: str | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: str | None = Field(None, description="client certificate's key (mutual TLS)")
    kafka_ssl_check_hostname: bool = Field(True, description="check the brokers' host names against their certificates")
    kafka_client_id: str = Field("tpipe", description="client.id prefix (the role is appended)")
    kafka_lz4_level: int = Field(
        1, ge=0, le=12,
        description="LZ4 level of the batches tpipe produces: 1 is LZ4's fast mode (aiokafka alone would use "
        "level 9, LZ4 HC: 3-4x the CPU per batch for a few percent smaller batches)",
    )

    topic_prefix: str = Field("teslemetry", description="topics are <prefix>.<event type>, <prefix>.dlq ...")
    topic_partitions: int = Field(3, ge=1, description="partitions of topics tpipe creates")
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
        None, description="retention.ms for topics tpipe creates (unset: the broker's default; -1: forever)"
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
