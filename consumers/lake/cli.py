"""``tpipe consume telemetry`` and ``tpipe lake latest|sql|engine-conf``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from consumers.command import UsageError, run_command
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import add_format_argument, emit

if TYPE_CHECKING:
    from consumers.lake.settings import LakeCatalogSettings


def register_consume(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from consumers.lake.settings import LakeSettings

    p = sub.add_parser(
        "telemetry",
        help="data/state/connectivity/vehicle_data topics into the Iceberg lake (exactly-once)",
        description="Consume the data, state, connectivity and vehicle_data topics into the Iceberg tables "
        "telemetry, vehicle_state and vehicle_data. Metrics on --metrics-port (default 9101).",
    )
    add_settings_arguments(p, LakeSettings)
    p.set_defaults(func=_consume)


def _consume(args: argparse.Namespace) -> int:
    from consumers.lake.settings import LakeSettings
    from consumers.lake.worker import TelemetryWorker
    from consumers.runtime import run_worker

    settings = settings_from_args(LakeSettings, args)
    return run_worker(TelemetryWorker(settings), settings)


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """``tpipe lake latest|sql``; returns the ``lake`` sub-commands so the CLI can add ``replay``."""
    from consumers.lake.settings import LakeCatalogSettings

    lake = sub.add_parser("lake", help="query the Iceberg lake")
    lake_sub: argparse._SubParsersAction = lake.add_subparsers(  # type: ignore[type-arg]
        dest="lake_command", required=True, metavar="COMMAND"
    )

    p = lake_sub.add_parser("latest", help="latest value of every field of one vehicle")
    p.add_argument("vin", metavar="VIN")
    add_format_argument(p)
    add_settings_arguments(p, LakeCatalogSettings)
    p.set_defaults(func=_latest)

    q = lake_sub.add_parser(
        "sql", help="run DuckDB SQL over the views telemetry, vehicle_state, vehicle_data, mistyped_values",
        description="The views telemetry, vehicle_state and vehicle_data are deduplicated by event_id; "
        "mistyped_values lists telemetry values whose type is not their field's (a number sent as an object "
        "...). Tables are read through Arrow; --vin/--since narrow what is read.",
    )
    q.add_argument("query", metavar="SQL", help='e.g. "SELECT vin, count(*) FROM telemetry GROUP BY vin"')
    q.add_argument("--vin", default=None, metavar="VIN", help="read only this vehicle's rows")
    q.add_argument("--since", default=None, metavar="TIME", help="read only rows created at or after this ISO time")
    q.add_argument("--max-width", type=int, default=60, metavar="N", help="cut table cells longer than this (default 60)")
    add_format_argument(q)
    add_settings_arguments(q, LakeCatalogSettings)
    q.set_defaults(func=_sql)

    e = lake_sub.add_parser(
        "engine-conf", help="the Spark or Trino settings that open this lake's tables",
        description="Spark: spark-sql/pyspark --conf lines for Iceberg's SparkCatalog (the jars: make spark-jars). "
        "Trino: an etc/catalog/<name>.properties file for the Iceberg connector (PostgreSQL or REST catalog). "
        "The output holds the catalog's password when --catalog-uri has one.",
    )
    e.add_argument("engine", choices=("spark", "trino"))
    add_settings_arguments(e, LakeCatalogSettings)
    e.set_defaults(func=_engine_conf)
    return lake_sub


def _announce(settings: LakeCatalogSettings) -> None:
    from consumers.lake.readonly import describe_lake
    from consumers.stores import announce_store

    announce_store("lake", describe_lake(settings))


def _engine_conf(args: argparse.Namespace) -> int:
    from consumers.lake.engines import spark_conf, trino_properties
    from consumers.lake.settings import LakeCatalogSettings

    s = settings_from_args(LakeCatalogSettings, args)
    try:
        if args.engine == "spark":
            print("\n".join(f"--conf {k}={v}" for k, v in spark_conf(s).items()))
        else:
            print("\n".join(f"{k}={v}" for k, v in trino_properties(s).items()))
    except ValueError as exc:
        print(f"tpipe lake engine-conf: {exc}", file=sys.stderr)
        return 2
    return 0


def _latest(args: argparse.Namespace) -> int:
    from consumers.lake.query import latest
    from consumers.lake.settings import LakeCatalogSettings

    def body() -> int:
        settings = settings_from_args(LakeCatalogSettings, args)
        cols, rows = latest(settings, args.vin)
        _announce(settings)
        if not rows:
            print(f"tpipe lake latest: no data for {args.vin}", file=sys.stderr)
            return 1
        emit(cols, rows, fmt=args.format)
        return 0

    return run_command("lake latest", body)


def _sql(args: argparse.Namespace) -> int:
    import duckdb

    from consumers.lake.query import connect, run_sql
    from consumers.lake.settings import LakeCatalogSettings

    def body() -> None:
        since = None
        if args.since:
            try:
                since = datetime.fromisoformat(args.since)
            except ValueError:
                raise UsageError(f"--since: not an ISO time: {args.since!r}") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
        settings = settings_from_args(LakeCatalogSettings, args)
        con = connect(settings, vin=args.vin, since=since)
        _announce(settings)
        try:
            cols, rows = run_sql(con, args.query)
        except duckdb.Error as exc:
            raise UsageError(f"query failed: {str(exc).splitlines()[0]}") from None
        n = len(rows)
        emit(cols, rows, fmt=args.format, null_text="NULL",
             max_width=args.max_width, caption=f"({n} row{'s' if n != 1 else ''})")

    return run_command("lake sql", body)
