"""Options of ``tpipe consume alerts`` and ``tpipe alerts ...`` (flags and ``TPIPE_*`` variables)."""

from __future__ import annotations

from pydantic import Field

from consumers.notify.settings import NotifySettings
from consumers.runtime.settings import WorkerSettings

__all__ = ["DEFAULT_DB_URL", "AlertsSettings"]

DEFAULT_DB_URL = "sqlite:///var/alerts.db"


class AlertsSettings(WorkerSettings, NotifySettings):
    """The alerts worker: Kafka + consumer loop + notification sinks + its database and rules."""

    alerts_db_url: str = Field(DEFAULT_DB_URL, description="alerts database (flag --db-url): SQLite file or postgresql://")
    alert_rules: str | None = Field(None, description="rules file, YAML or JSON (flag --rules); default: notify Customer alerts")
    metrics_port: int = Field(9102, ge=0, description="Prometheus /metrics port (0: off)")
