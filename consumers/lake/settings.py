"""Options of the telemetry (lake) worker and the ``tpipe lake`` commands (each also a ``TPIPE_*`` variable)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.runtime.settings import WorkerSettings


class LakeCatalogSettings(BaseSettings):
    """Where the lake lives. Used by the worker and by ``tpipe lake latest|sql``."""

    model_config = SettingsConfigDict(env_prefix="TPIPE_", extra="ignore")

    catalog_type: Literal["sql", "rest"] = Field("sql", description="sql (SQLite/PostgreSQL URL) or rest")
    catalog_uri: str = Field(
        "sqlite:///var/lake/catalog.db",
        description="SQLAlchemy URL (sqlite:///..., postgresql+psycopg2://...) or the REST catalog URL",
    )
    catalog_name: str = Field("tpipe", description="catalog name (rows of the SQL catalog are keyed by it)")
    warehouse: str = Field("var/lake/warehouse", description="warehouse folder or URI (s3://bucket/path)")
    catalog_property: list[str] = Field(
        default_factory=list,
        description="extra catalog/FileIO property KEY=VALUE, e.g. s3.endpoint=http://minio:9000",
    )
    namespace: str = Field("lake", description="Iceberg namespace of the tables")


class LakeSettings(WorkerSettings, LakeCatalogSettings):
    """The telemetry worker: catalog + commit policy + dedup window."""

    metrics_port: int = Field(9101, ge=0, description="Prometheus /metrics port (0: off)")
    commit_rows: int = Field(500_000, ge=1, description="commit a table once this many rows are buffered")
    commit_interval_s: float = Field(5.0, gt=0, description="commit a table at least this often when it has work")
    dedup_max_ids: int = Field(
        10_000_000, ge=1,
        description="event_ids each table's dedup index holds in memory, 16 bytes each (10M: 160 MB); hours of "
        "created_at beyond it are reloaded on demand, an hour larger than it is checked against the table",
    )
    dedup_cache_days: int = Field(
        4, ge=1, description="at most this many days (24 hours each) of event_ids in the dedup index",
    )
    commit_attempts: int = Field(5, ge=1, description="tries per commit on CommitFailedException (each reloads)")
    keep_snapshots: int = Field(
        20, ge=0,
        description="snapshots kept per table for time travel (expired once twice as many; the newest one "
        "storing each partition's offset is always kept); 0: never expire",
    )
    row_builder: Literal["native", "python"] = Field(
        "native",
        description="how telemetry rows are built: native (a batch at once, vectorised) or python (row by row, "
        "the reference the native builder is tested against)",
    )
