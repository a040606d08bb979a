"""Notification options shared by the alerts and credits workers (flags and ``TPIPE_*`` variables)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.notify.sinks import DeadLetterWriter, HttpSink, KafkaSink, LogSink, Sink

__all__ = ["NotifySettings", "build_sinks"]


class NotifySettings(BaseSettings):
    """Where notifications go. The HTTP sink is on when ``notify_http_url`` is set."""

    model_config = SettingsConfigDict(env_prefix="TPIPE_", extra="ignore")

    notify_log: bool = Field(True, description="log each notification")
    notify_kafka: bool = Field(True, description="publish notifications to <prefix>.notifications")
    notify_http_url: str | None = Field(None, description="POST notifications (JSON) to this URL")
    notify_http_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key for the X-Tpipe-Signature header"
    )
    notify_http_attempts: int = Field(5, ge=1, description="HTTP tries before dead-lettering")
    notify_http_backoff_s: float = Field(0.5, ge=0, description="first retry delay (doubles, max 30 s)")
    notify_http_timeout_s: float = Field(10.0, gt=0, description="HTTP request timeout")
    notify_poll_interval_s: float = Field(5.0, gt=0, description="how often pending notifications are retried")

    def register_secrets(self, *db_urls: str) -> None:
        """Keep the HMAC key and database passwords out of every log line (``tpipe.logs``)."""
        from sqlalchemy.engine import make_url

        from tpipe.logs import register_secret

        if self.notify_http_secret is not None:
            register_secret(self.notify_http_secret.get_secret_value())
        for url in db_urls:
            try:
                register_secret(make_url(url).password)
            except Exception:  # a malformed URL fails later, with a proper message
                pass


def build_sinks(
    s: NotifySettings, *, producer: Any | None, notifications_topic: str, dlq_topic: str, worker: str
) -> list[Sink]:
    """The configured sinks; the Kafka sink and dead-lettering need ``producer``."""
    sinks: list[Sink] = []
    if s.notify_log:
        sinks.append(LogSink())
    if s.notify_kafka and producer is not None:
        sinks.append(KafkaSink(producer, notifications_topic))
    if s.notify_http_url:
        sinks.append(
            HttpSink(
                s.notify_http_url,
                secret=s.notify_http_secret.get_secret_value() if s.notify_http_secret else None,
                attempts=s.notify_http_attempts,
                backoff_s=s.notify_http_backoff_s,
                timeout_s=s.notify_http_timeout_s,
                dead_letter=DeadLetterWriter(producer, dlq_topic, worker=worker) if producer is not None else None,
            )
        )
    return sinks
