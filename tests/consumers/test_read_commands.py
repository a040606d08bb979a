"""Read commands never create a store: a missing database, catalog or table is exit 2 and one line
naming the path and how to set it; the state root (``--home`` / ``TPIPE_HOME``) finds the stores from
any directory, and every read command says on stderr which store it read."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.alerts.store import AlertStore
from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import ensure_tables, open_catalog
from consumers.sqlstore import make_engine
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401
from tpipe.cli import main

READS = {
    "alerts active": (["alerts", "active"], "alerts.db", "--db-url or TPIPE_ALERTS_DB_URL"),
    "alerts history": (["alerts", "history", "--since", "7d"], "alerts.db", "--db-url or TPIPE_ALERTS_DB_URL"),
    "alerts errors": (["alerts", "errors"], "alerts.db", "--db-url or TPIPE_ALERTS_DB_URL"),
    "credits report": (["credits", "report"], "credits.db", "--db-url or TPIPE_CREDITS_DB_URL"),
    "lake sql": (["lake", "sql", "SELECT count(*) FROM telemetry"], "lake/catalog.db",
                 "--catalog-uri or TPIPE_CATALOG_URI"),
    "lake latest": (["lake", "latest", "5YJ3E1EA0PF000001"], "lake/catalog.db", "--catalog-uri or TPIPE_CATALOG_URI"),
    "lake replay": (["lake", "replay", "--from", "7d", "--dry-run"], "lake/catalog.db",
                    "--catalog-uri or TPIPE_CATALOG_URI"),
}


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without ./var and no TPIPE_ variables: what a new shell sees."""
    import os

    for key in list(os.environ):
        if key.startswith("TPIPE_"):
            monkeypatch.delenv(key)
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("name", list(READS))
def test_missing_default_store_is_exit_2_and_nothing_created(
    name: str, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, file, how = READS[name]
    before = _files(elsewhere.parent)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"tpipe {name}: error: no ") and str(elsewhere / "var" / file) in err and how in err
    assert "TPIPE_HOME" in err
    assert _files(elsewhere.parent) == before  # no var/, no empty database or catalog


@pytest.mark.parametrize("name", ["alerts active", "credits report"])
def test_mistyped_url_and_a_file_that_is_not_the_store(
    name: str, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _, how = READS[name]
    typo = elsewhere / "vra" / "alerts.db"
    assert main([*argv, "--db-url", f"sqlite:///{typo}"]) == 2
    assert str(typo) in capsys.readouterr().err and not typo.parent.exists()
    other = elsewhere / "other.db"
    make_engine(f"sqlite:///{other}").connect().exec_driver_sql("CREATE TABLE x (a INT)")
    assert main([*argv, "--db-url", f"sqlite:///{other}"]) == 2
    err = capsys.readouterr().err
    assert f"{other} is not the" in err and how in err


def test_home_finds_the_stores_from_any_directory(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "state"
    AlertStore(make_engine(f"sqlite:///{home / 'alerts.db'}")).create_tables()
    lake = LakeCatalogSettings(home=str(home))
    ensure_tables(open_catalog(lake), lake.namespace)
    monkeypatch.setenv("TPIPE_HOME", str(home))
    assert main(["alerts", "active"]) == 0
    captured = capsys.readouterr()
    assert f"alerts database: {home / 'alerts.db'}" in captured.err and "0 active alert(s)" in captured.out
    assert main(["lake", "sql", "SELECT count(*) AS n FROM telemetry", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "n\n0\n"
    assert f"lake: catalog {home / 'lake' / 'catalog.db'} (sql), namespace lake" in captured.err
    # the catalog exists, the namespace does not
    assert main(["lake", "sql", "SELECT 1", "--namespace", "nope"]) == 2
    assert "no lake tables in catalog" in capsys.readouterr().err
    monkeypatch.delenv("TPIPE_HOME")
    assert main(["alerts", "active", "--home", str(home)]) == 0  # the flag does the same
    assert not (elsewhere / "var").exists()


@pytest.mark.postgres
def test_postgres_database_without_tables_is_not_given_any(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from sqlalchemy import inspect

    url = fresh_database(postgres_url)
    assert main(["alerts", "active", "--db-url", url]) == 2
    err = capsys.readouterr().err
    assert "no alerts database at" in err and "the database is empty" in err and "--db-url" in err
    engine = make_engine(url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert main(["credits", "report", "--db-url", url.rsplit("/", 1)[0] + "/no_such_db"]) == 2
    assert "cannot open the credits database" in capsys.readouterr().err
