"""Apache Spark in tests: ``pyspark`` from PyPI (local mode) with Iceberg's Spark runtime and the JDBC
drivers resolved from Maven Central by ``deploy/spark/pom.xml`` into ``.cache/spark/<iceberg>/jars``,
the recipe of the broker's jars (``localbroker.maven.resolve_pom``). ``make spark-jars`` (part of
``make test``) resolves them ahead; ``python -m tests.support.spark`` prints the jar folder.

One ``SparkSession`` per test session (fixture ``spark``): starting the JVM costs seconds, so tests
register their lake's catalog on it at run time (``register_lake``: Spark loads a catalog by name on
first use, so each lake needs its own ``--catalog-name``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localbroker.maven import resolve_pom

_REPO = Path(__file__).resolve().parents[2]
POM = _REPO / "deploy" / "spark" / "pom.xml"


def iceberg_version() -> str:
    m = re.search(r"<iceberg\.version>\s*([^<\s]+)\s*</iceberg\.version>", POM.read_text())
    if not m:
        raise RuntimeError(f"no <iceberg.version> in {POM}")
    return m.group(1)


def ensure_spark_jars() -> list[Path]:
    """The jars Spark needs for the lake (Iceberg's runtime, the SQLite and PostgreSQL JDBC drivers)."""
    version = iceberg_version()
    folder = resolve_pom(POM, _REPO / ".cache" / "spark" / version / "jars", dir_property="spark.jars.dir",
                         expect="iceberg-spark-runtime-*.jar", what=f"iceberg spark runtime {version}")
    return sorted(folder.glob("*.jar"))


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """A local SparkSession (2 threads, loopback only, UTC, no UI) with the lake jars on its classpath."""
    from pyspark.sql import SparkSession

    jars = ensure_spark_jars()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, whatever the host name resolves to
    classpath = ":".join(str(j) for j in jars)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("tpipe-tests")
        # on the driver's system classpath: java.sql.DriverManager must see the JDBC drivers
        .config("spark.driver.extraClassPath", classpath)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    try:
        yield session
    finally:
        session.stop()


def register_lake(session: object, conf: dict[str, str]) -> None:
    """Set a lake catalog's ``spark.sql.catalog.<name>.*`` on a running session."""
    for key, value in conf.items():
        session.conf.set(key, value)  # type: ignore[attr-defined]


if __name__ == "__main__":
    jars = ensure_spark_jars()
    print(jars[0].parent if jars else "")
    sys.exit(0 if jars else 1)
