"""Options of ``tpipe consume credits`` and ``tpipe credits report`` (flags and ``TPIPE_*`` variables)."""

from __future__ import annotations

from pydantic import Field

from consumers.notify.settings import NotifySettings
from consumers.runtime.settings import WorkerSettings

__all__ = ["DEFAULT_DB_URL", "CreditsSettings"]

DEFAULT_DB_URL = "sqlite:///var/credits.db"


class CreditsSettings(WorkerSettings, NotifySettings):
    """The credits worker: Kafka + consumer loop + notification sinks + its ledger and alarm."""

    credits_db_url: str = Field(DEFAULT_DB_URL, description="credits database (flag --db-url): SQLite file or postgresql://")
    low_balance: int | None = Field(None, description="notify once when the balance falls below this (re-arms above it)")
    metrics_port: int = Field(9103, ge=0, description="Prometheus /metrics port (0: off)")
