"""A real PostgreSQL server for tests: session fixture ``postgres_url``, plus ``fresh_database``.

``TPIPE_TEST_POSTGRES_URL`` (a superuser URL, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``)
when set; otherwise a throw-away cluster started from Debian's server binaries
(``/usr/lib/postgresql/<version>/bin``): ``initdb`` + ``pg_ctl`` on a free port, in a temporary
directory owned by the ``postgres`` OS user (PostgreSQL refuses to run as root, so commands run
through ``runuser -u postgres --`` when the tests run as root), trust authentication on 127.0.0.1.
Without binaries the tests fail ("install postgresql (make test does)": deploy/postgres/ensure-postgres.sh);
they are never skipped.

Use it from a test module with ``from tests.support.postgres import postgres_url  # noqa: F401``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localbroker import free_port

__all__ = ["db_url", "find_pg_bin", "fresh_database", "postgres_url"]

ENV_URL = "TPIPE_TEST_POSTGRES_URL"
INSTALL_HINT = "install postgresql (make test does)"


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb and pg_ctl (or PG_BIN / PATH)."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0
    )
    candidates.extend(Path(p) for p in reversed(versions))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _wait_ready(url: str, timeout: float, proc_log: Path) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            psycopg2.connect(url, connect_timeout=2).close()
            return
        except psycopg2.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    log = proc_log.read_text(errors="replace")[-4000:] if proc_log.exists() else ""
    pytest.fail(f"PostgreSQL did not accept connections within {timeout}s: {last}\n{log}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Superuser URL of a running PostgreSQL (``postgresql://postgres@127.0.0.1:<port>/postgres``)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    pg_bin = find_pg_bin()
    if pg_bin is None:
        pytest.fail(INSTALL_HINT)
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root needs runuser to start PostgreSQL as the postgres user")
    base = Path(tempfile.mkdtemp(prefix="tpipe-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
             "--locale=C", "--no-sync"]
        ),
        check=True, capture_output=True, timeout=120,
    )
    opts = (
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=50 -c shared_buffers=32MB"
    )
    subprocess.run(
        _as_postgres([str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"]),
        check=True, capture_output=True, timeout=90,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        _wait_ready(url, 30, log)
        yield url
    finally:
        subprocess.run(
            _as_postgres([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str, prefix: str = "tpipe_test") -> str:
    """Create an empty database on the server; returns its URL (same credentials)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(server_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, then (second param) a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))
