"""Options of ``tpipe consume credits`` and ``tpipe credits report`` (flags and ``TPIPE_*`` variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from consumers.notify.settings import NotifySettings
from consumers.runtime.settings import WorkerSettings
from plumbing.home import HomeSettings, sqlite_url

__all__ = ["DEFAULT_DB_FILE", "CreditsSettings"]

#: the default database, under the state root (``plumbing.home``)
DEFAULT_DB_FILE = "credits.db"


class CreditsSettings(WorkerSettings, NotifySettings, HomeSettings):
    """The credits worker: Kafka + consumer loop + notification sinks + its ledger and alarm."""

    cli_group: ClassVar[str] = "credits"

    credits_db_url: str = Field(
        "", description="credits database URL: sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB",
        json_schema_extra={"default_text": "sqlite:///<home>/credits.db"},
    )
    low_balance: int | None = Field(None, description="notify once when the balance falls below this (re-arms above it)")
    metrics_port: int = Field(9103, ge=0, description="Prometheus /metrics port (0: a free port, printed at start)")

    @model_validator(mode="after")
    def _default_db(self) -> CreditsSettings:
        if not self.credits_db_url:
            self.credits_db_url = sqlite_url(self.home_path(DEFAULT_DB_FILE))
        return self
