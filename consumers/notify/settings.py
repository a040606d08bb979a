"""Notification options shared by the alerts and credits workers (flags and ``TPIPE_*`` variables)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumers.notify.signing import SecretError, secret_key
from consumers.notify.sinks import DeadLetterWriter, HttpSink, KafkaSink, LogSink, NotifyConfigError, Sink

__all__ = ["NotifyConfigError", "NotifySettings", "build_sinks"]


class NotifySettings(BaseSettings):
    """Where notifications go. The HTTP sink is on when ``notify_http_url`` is set."""

    model_config = SettingsConfigDict(env_prefix="TPIPE_", extra="ignore")
    cli_group: ClassVar[str] = "notifications"

    notify_log: bool = Field(True, description="log each notification")
    notify_kafka: bool = Field(True, description="publish notifications to <prefix>.notifications")
    notify_http_url: str | None = Field(None, description="POST notifications (JSON) to this URL")
    notify_http_secret: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Standard Webhooks signing secret, whsec_<base64> (any other string is used as its bytes); "
        "several sign with each, for rotation (env: comma-separated or a JSON list)",
    )
    notify_unsigned: bool = Field(
        False, description="allow --notify-http-url without a secret: notifications go out unsigned"
    )
    notify_http_attempts: int = Field(5, ge=1, description="HTTP tries before dead-lettering")
    notify_http_backoff_s: float = Field(0.5, ge=0, description="first retry delay (doubles, max 30 s)")
    notify_http_timeout_s: float = Field(10.0, gt=0, description="HTTP request timeout")
    notify_poll_interval_s: float = Field(5.0, gt=0, description="how often pending notifications are retried")

    @field_validator("notify_http_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        """One secret, several comma-separated, a JSON list, or a list of any of these."""
        if value is None:
            return []
        items = value if isinstance(value, (list, tuple)) else [value]
        out: list[Any] = []
        for item in items:
            if not isinstance(item, str):
                out.append(item)  # a SecretStr already
            elif item.lstrip().startswith("["):
                out.extend(json.loads(item))
            else:
                out.extend(part.strip() for part in item.split(",") if part.strip())
        return out

    def http_secrets(self) -> list[str]:
        return [s.get_secret_value() for s in self.notify_http_secret]

    def check_notify(self) -> None:
        """Refuse (``NotifyConfigError``, one line) an HTTP sink without a secret unless
        ``notify_unsigned``, and a secret that cannot be used."""
        for secret in self.http_secrets():
            try:
                secret_key(secret)
            except SecretError as exc:
                raise NotifyConfigError(f"--notify-http-secret: {exc}") from None
        if self.notify_http_url and not self.notify_http_secret and not self.notify_unsigned:
            raise NotifyConfigError(
                "--notify-http-url is set but no --notify-http-secret (TPIPE_NOTIFY_HTTP_SECRET): refusing to send "
                "unsigned notifications; give a whsec_ secret, or --notify-unsigned to send them unsigned"
            )

    def register_secrets(self, *db_urls: str) -> None:
        """Keep the signing secrets and database passwords out of every log line (``plumbing.logs``)."""
        from sqlalchemy.engine import make_url

        from plumbing.logs import register_secret

        for secret in self.http_secrets():
            register_secret(secret)
        for url in db_urls:
            try:
                register_secret(make_url(url).password)
            except Exception:  # a malformed URL fails later, with a proper message
                pass


def run_notifying_worker(
    command: str, settings: Any, db_url: str, build: Callable[[], Any], *refusals: type[Exception]
) -> int:
    """``tpipe consume alerts|credits``: secrets kept out of the logs, the notification config
    checked, the worker built and run; a bad config (``NotifyConfigError`` or one of ``refusals``) is
    one line on stderr and exit 2."""
    from consumers.runtime import run_worker

    settings.register_secrets(db_url)
    caught: tuple[type[Exception], ...] = (NotifyConfigError, *refusals)
    try:
        settings.check_notify()
        worker = build()
    except caught as exc:
        print(f"tpipe {command}: error: {exc}", file=sys.stderr)
        return 2
    return run_worker(worker, settings)


def build_sinks(
    s: NotifySettings, *, producer: Any | None, notifications_topic: str, dlq_topic: str, worker: str
) -> list[Sink]:
    """The configured sinks; the Kafka sink and dead-lettering need ``producer``. Raises
    ``NotifyConfigError`` for an HTTP sink without a secret (unless ``notify_unsigned``)."""
    s.check_notify()
    sinks: list[Sink] = []
    if s.notify_log:
        sinks.append(LogSink())
    if s.notify_kafka and producer is not None:
        sinks.append(KafkaSink(producer, notifications_topic))
    if s.notify_http_url:
        sinks.append(
            HttpSink(
                s.notify_http_url,
                secrets=s.http_secrets(),
                unsigned=s.notify_unsigned,
                attempts=s.notify_http_attempts,
                backoff_s=s.notify_http_backoff_s,
                timeout_s=s.notify_http_timeout_s,
                dead_letter=DeadLetterWriter(producer, dlq_topic, worker=worker) if producer is not None else None,
            )
        )
    return sinks
