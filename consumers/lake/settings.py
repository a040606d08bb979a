"""Options of the telemetry (lake) worker and the ``tpipe lake`` commands (each also a ``TPIPE_*`` variable)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from consumers.runtime.settings import WorkerSettings
from plumbing.home import HomeSettings, sqlite_url


class LakeCatalogSettings(HomeSettings):
    """Where the lake lives. Used by the worker and by ``tpipe lake latest|sql|replay``.

    ``catalog_uri`` and ``warehouse`` default to ``<home>/lake/catalog.db`` and ``<home>/lake/warehouse``
    (``plumbing.home``), made absolute."""

    cli_group: ClassVar[str] = "lake catalog"

    catalog_type: Literal["sql", "rest"] = Field("sql", description="sql (SQLite/PostgreSQL URL) or rest")
    catalog_uri: str = Field(
        "",
        description="SQLAlchemy URL (sqlite:///..., postgresql+psycopg2://...) or the REST catalog URL",
        json_schema_extra={"default_text": "sqlite:///<home>/lake/catalog.db"},
    )
    catalog_name: str = Field("tpipe", description="catalog name (rows of the SQL catalog are keyed by it)")
    warehouse: str = Field(
        "", description="warehouse folder or URI (s3://bucket/path)",
        json_schema_extra={"metavar": "PATH", "default_text": "<home>/lake/warehouse"},
    )
    catalog_property: list[str] = Field(
        default_factory=list,
        description="extra catalog/FileIO property, e.g. s3.endpoint=http://minio:9000",
        json_schema_extra={"metavar": "KEY=VALUE"},
    )
    namespace: str = Field("lake", description="Iceberg namespace of the tables")

    @model_validator(mode="after")
    def _default_paths(self) -> LakeCatalogSettings:
        if not self.catalog_uri:
            self.catalog_uri = sqlite_url(self.home_path("lake", "catalog.db"))
        if not self.warehouse:
            self.warehouse = str(self.home_path("lake", "warehouse"))
        return self


class LakeSettings(WorkerSettings, LakeCatalogSettings):
    """The telemetry worker: catalog + commit policy + dedup window."""

    cli_group: ClassVar[str] = "lake writer"

    metrics_port: int = Field(9101, ge=0, description="Prometheus /metrics port (0: a free port, printed at start)")
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
