"""Options of ``tpipe console`` (each a ``--flag`` and a ``TPIPE_*`` variable).

The console reads what the other commands read, under the same variables: Kafka (``TPIPE_KAFKA``,
``TPIPE_TOPIC_PREFIX`` ...), the lake (``TPIPE_CATALOG_URI``, ``TPIPE_WAREHOUSE``), the alerts and
credits databases (``TPIPE_ALERTS_DB_URL``, ``TPIPE_CREDITS_DB_URL``; by default under the state root,
``--home`` / ``TPIPE_HOME``, as for ``tpipe alerts`` and ``tpipe credits``), the tokens file
(``TPIPE_TOKENS_FILE``) and the token a replay or redrive to a webhook URL sends (``TPIPE_REPLAY_TOKEN``,
as for ``tpipe replay``); its own options are named ``console_*`` so that they never collide with the
receiver's ``TPIPE_HOST`` / ``TPIPE_PORT``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from consumers.lake.settings import LakeCatalogSettings
from plumbing.home import sqlite_url
from plumbing.settings import KafkaSettings

__all__ = ["ConsoleSettings"]


class ConsoleSettings(KafkaSettings, LakeCatalogSettings):
    console_host: str = Field(
        "127.0.0.1",
        description="address to listen on; any address but a loopback one requires --console-password",
    )
    console_port: int = Field(8070, ge=0, le=65535, description="HTTP port of the console")
    console_user: str = Field("admin", description="user name of the console's admin credential")
    console_password: SecretStr | None = Field(
        None,
        description="the console's admin password (HTTP Basic; never a webhook token); required for every "
        "page when set, and to listen on a non-loopback address",
    )
    receiver_url: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8080"],
        description="base URL of a receiver's /healthz, /readyz and /metrics (repeatable; with --ops-port "
        "give the ops port's URL)",
    )
    worker_group: list[str] = Field(
        default_factory=lambda: ["telemetry", "alerts", "credits"],
        description="consumer groups whose lag is shown: a worker name (group <topic prefix>.<name>) or a "
        "full group id (repeatable)",
    )
    tokens_file: Path = Field(Path("var/tokens.json"), description="the receivers' tokens file (tpipe token)")
    alerts_db_url: str = Field("", description="alerts database the alerts worker writes",
                               json_schema_extra={"default_text": "sqlite:///<home>/alerts.db"})
    credits_db_url: str = Field("", description="credits ledger the credits worker writes",
                                json_schema_extra={"default_text": "sqlite:///<home>/credits.db"})
    console_webhook_url: list[str] = Field(
        default_factory=list,
        description="a receiver's webhook URL the DLQ page offers for redriving dead letters (webhook bodies "
        "the receiver could not parse can only go there)",
        json_schema_extra={"default_text": "<--receiver-url>/webhook"},
    )
    replay_token: SecretStr | None = Field(
        None,
        description="bearer token sent with a redrive or a replay to a webhook URL (the variable tpipe replay "
        "reads); a token typed on the page, or in the URL (?token=), is used instead",
    )
    console_replay_dir: str = Field(
        "",
        description="the one directory the Replay page writes files to (the page asks for a file name, never "
        "a path)",
        json_schema_extra={"metavar": "DIR", "default_text": "<home>/replays"},
    )
    console_sample_s: float = Field(
        2.0, gt=0, description="how often receivers and Kafka are sampled for the Overview"
    )
    console_refresh_s: float = Field(5.0, gt=0, description="how often the Overview page refreshes itself")
    console_query_limit: int = Field(500, ge=1, le=100_000, description="most rows one lake or Kafka query returns")
    console_max_window_days: float = Field(
        31.0, gt=0, description="longest time window a page may ask of the lake"
    )

    @model_validator(mode="after")
    def _default_stores(self) -> ConsoleSettings:
        if not self.alerts_db_url:
            self.alerts_db_url = sqlite_url(self.home_path("alerts.db"))
        if not self.credits_db_url:
            self.credits_db_url = sqlite_url(self.home_path("credits.db"))
        if not self.console_replay_dir:
            self.console_replay_dir = str(self.home_path("replays"))
        return self

    def webhook_urls(self) -> list[str]:
        """The receivers' webhook URLs the DLQ page offers (``console_webhook_url``, else each receiver's)."""
        return self.console_webhook_url or [u.rstrip("/") + "/webhook" for u in self.receiver_url]

    def loopback_only(self) -> bool:
        """True when the console listens on a loopback address only."""
        host = self.console_host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def group_ids(self) -> list[str]:
        """The consumer-group ids of ``worker_group``."""
        return [g if "." in g else f"{self.topic_prefix}.{g}" for g in self.worker_group]
