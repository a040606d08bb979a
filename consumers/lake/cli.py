"""``tpipe consume telemetry`` and ``tpipe lake latest|sql|engine-conf``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from plumbing.cli_settings import add_settings_arguments, settings_from_args


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
    p.add_argument("vin")
    add_settings_arguments(p, LakeCatalogSettings)
    p.set_defaults(func=_latest)

    q = lake_sub.add_parser(
        "sql", help="run DuckDB SQL over the views telemetry, vehicle_state, vehicle_data",
        description="The views are deduplicated by event_id. Tables are read through Arrow; "
        "--vin/--since narrow what is read.",
    )
    q.add_argument("query", help='e.g. "SELECT vin, count(*) FROM telemetry GROUP BY vin"')
    q.add_argument("--vin", default=None, help="read only this vehicle's rows")
    q.add_argument("--since", default=None, help="read only rows created at or after this ISO time")
    q.add_argument("--max-width", type=int, default=60, help="cut cells longer than this")
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
    from consumers.lake.query import format_table, latest
    from consumers.lake.settings import LakeCatalogSettings

    cols, rows = latest(settings_from_args(LakeCatalogSettings, args), args.vin)
    if not rows:
        print(f"no data for {args.vin}", file=sys.stderr)
        return 1
    print(format_table(cols, rows))
    return 0


def _sql(args: argparse.Namespace) -> int:
    import duckdb

    from consumers.lake.query import connect, format_table, run_sql
    from consumers.lake.settings import LakeCatalogSettings

    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    con = connect(settings_from_args(LakeCatalogSettings, args), vin=args.vin, since=since)
    try:
        cols, rows = run_sql(con, args.query)
    except duckdb.Error as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 2
    print(format_table(cols, rows, max_width=args.max_width))
    return 0
