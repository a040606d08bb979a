"""Options of ``tpipe consume alerts`` and ``tpipe alerts ...`` (flags and ``TPIPE_*`` variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from consumers.notify.settings import NotifySettings
from consumers.runtime.settings import WorkerSettings
from plumbing.home import HomeSettings, sqlite_url

__all__ = ["DEFAULT_DB_FILE", "AlertsSettings"]

#: the default database, under the state root (``plumbing.home``)
DEFAULT_DB_FILE = "alerts.db"


class AlertsSettings(WorkerSettings, NotifySettings, HomeSettings):
    """The alerts worker: Kafka + consumer loop + notification sinks + its database and rules."""

    cli_group: ClassVar[str] = "alerts"

    alerts_db_url: str = Field(
        "", description="alerts database URL: sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB",
        json_schema_extra={"default_text": "sqlite:///<home>/alerts.db"},
    )
    alert_rules: str | None = Field(None, description="notification rules file, YAML or JSON (default: notify Customer alerts)",
                                     json_schema_extra={"metavar": "FILE"})
    metrics_port: int = Field(9102, ge=0, description="Prometheus /metrics port (0: a free port, printed at start)")

    @model_validator(mode="after")
    def _default_db(self) -> AlertsSettings:
        if not self.alerts_db_url:
            self.alerts_db_url = sqlite_url(self.home_path(DEFAULT_DB_FILE))
        return self
