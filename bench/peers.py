"""The peers ``make bench`` measures next to tpipe, prepared at bench time, never kept in this repository:

* the Go reference server (net/http + franz-go) of the shared peers material (``<shared>/peers/goserver``):
  its source is copied into ``.cache/bench/`` and built with the machine's ``go``, its modules coming
  from the Go module proxy (``go.sum`` pins them); without ``go`` or the peers material it is skipped
  with a line saying so;
* the Apache Iceberg Kafka Connect sink on a standalone Kafka Connect worker: its jars resolved from
  Maven Central by the peers' recipe (``<shared>/peers/iceberg-connect/pom.xml``) into
  ``.cache/bench/iceberg-libs``, its worker and connector properties rendered from the peers'
  templates; skipped with a line without ``mvn`` / ``java`` or the peers material.

The peers material is found at ``$TPIPE_PEERS_DIR``, else ``../shared/peers`` from the project root,
else next to the main checkout of a git worktree, else next to the clone's origin (a fresh clone of
the main checkout).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.infra import CACHE, ROOT, log

GO_BUILD_TIMEOUT_S = 900
MAVEN_TIMEOUT_S = 1500


def _git(repo: Path, *args: str) -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    return ""


def _checkouts(repo: Path) -> list[Path]:
    """``repo`` and, for a git worktree, its main checkout."""
    out = [repo]
    common = _git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")
    if common:
        out.append(Path(common).parent)
    return out


def peers_dir() -> Path | None:
    """The shared peers material, or None when this machine has none."""
    roots = _checkouts(ROOT)
    origin = _git(ROOT, "config", "--get", "remote.origin.url")
    if origin and "://" not in origin and not origin.startswith("git@") and Path(origin).is_dir():
        roots += _checkouts(Path(origin).resolve())  # a fresh clone of a local checkout
    candidates = [os.environ.get("TPIPE_PEERS_DIR", ""), *(str(r.parent / "shared" / "peers") for r in roots)]
    for c in candidates:
        if c and (Path(c) / "goserver" / "main.go").is_file():
            return Path(c)
    return None


@dataclass(frozen=True)
class Peers:
    """What could be prepared: each field a path, or None with the reason in ``skipped``."""

    goserver: Path | None
    iceberg_libs: Path | None
    iceberg_templates: Path | None
    skipped: dict[str, str]


def prepare(want_go: bool, want_iceberg: bool) -> Peers:
    skipped: dict[str, str] = {}
    src = peers_dir()
    go = libs = None
    if src is None:
        why = ("no shared peers material (set TPIPE_PEERS_DIR to the peers folder, or keep ../shared/peers "
               "next to the project)")
        if want_go:
            skipped["go"] = why
        if want_iceberg:
            skipped["iceberg"] = why
        return Peers(None, None, None, skipped)
    if want_go:
        try:
            go = build_goserver(src / "goserver")
        except SkipPeer as exc:
            skipped["go"] = str(exc)
    if want_iceberg:
        try:
            libs = resolve_iceberg_libs(src / "iceberg-connect")
        except SkipPeer as exc:
            skipped["iceberg"] = str(exc)
    for name, why in skipped.items():
        log(f"peer {name} skipped: {why}")
    return Peers(go, libs, src / "iceberg-connect" if libs else None, skipped)


class SkipPeer(Exception):
    """A peer cannot be prepared on this machine (the reason is its message)."""


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build_goserver(src: Path) -> Path:
    """The Go reference binary, built once per source version into .cache/bench/."""
    go = shutil.which("go")
    if go is None:
        raise SkipPeer("no Go toolchain on this machine (go not on PATH)")
    tag = _digest(src)
    binary = CACHE / f"goserver-{tag}"
    if binary.exists():
        return binary
    work = CACHE / f"goserver-src-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    for p in work.iterdir():
        p.chmod(0o644)
    log(f"building the Go reference ({src}) with {go}: modules from the Go module proxy")
    env = {**os.environ, "GOFLAGS": "-mod=readonly"}
    out = subprocess.run([go, "build", "-o", str(binary), "."], cwd=work, capture_output=True, text=True,
                         env=env, timeout=GO_BUILD_TIMEOUT_S)
    if out.returncode != 0:
        raise SkipPeer(f"go build failed: {out.stderr.strip()[-500:]}")
    return binary


def resolve_iceberg_libs(recipe: Path) -> Path:
    """Kafka Connect + the Iceberg sink + their runtime classpath, from Maven Central, once."""
    libs = CACHE / "iceberg-libs"
    if (libs / ".complete").exists():
        return libs
    mvn, java = shutil.which("mvn"), shutil.which("java")
    if mvn is None or java is None:
        raise SkipPeer(f"{'mvn' if mvn is None else 'java'} not on PATH (make system-deps installs both)")
    shutil.rmtree(libs, ignore_errors=True)
    log(f"resolving Kafka Connect and the Iceberg sink from Maven Central ({recipe / 'pom.xml'})")
    out = subprocess.run([mvn, "-B", "-q", "-f", str(recipe / "pom.xml"), "package", f"-Dlibs.dir={libs}"],
                         capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
    if out.returncode != 0 or not any(libs.glob("iceberg-kafka-connect-*.jar")):
        raise SkipPeer(f"maven could not resolve the Iceberg sink: {(out.stdout + out.stderr).strip()[-500:]}")
    (libs / ".complete").touch()
    return libs


# ------------------------------------------------------------------------------ the Iceberg sink


def connect_command(peers: Peers, work: Path, bootstrap: str, topic: str, name: str, rest_port: int,
                    commit_interval_ms: int) -> list[str]:
    """Render the worker and connector properties into ``work``; the command that runs them."""
    assert peers.iceberg_libs is not None and peers.iceberg_templates is not None
    values = {"bootstrap": bootstrap, "rest_port": rest_port, "work": str(work), "name": name, "topic": topic,
              "commit_interval_ms": commit_interval_ms, "control_topic": f"{name}-control"}
    for kind in ("worker", "sink"):
        text = (peers.iceberg_templates / f"{kind}.properties.template").read_text()
        (work / f"{kind}.properties").write_text(string.Template(text).substitute(values))
    log4j = peers.iceberg_templates / "log4j2.properties"
    return ["java", "-Xms512m", "-Xmx2g", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{peers.iceberg_libs}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
            str(work / "worker.properties"), str(work / "sink.properties")]


def connect_committed(work: Path) -> tuple[int, str | None]:
    """Records in the sink table's current snapshot (0 before its first commit), and its metadata file."""
    db = work / "catalog.db"
    if not db.exists():
        return 0, None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT metadata_location FROM iceberg_tables WHERE table_name = 'events'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return 0, None
    if not row:
        return 0, None
    location = str(row[0])
    meta: dict[str, Any] = json.loads(Path(location.removeprefix("file:")).read_bytes())
    current = meta.get("current-snapshot-id")
    snap = next((s for s in meta.get("snapshots", []) if s["snapshot-id"] == current), None)
    return (int(snap["summary"]["total-records"]) if snap else 0), location


def connect_distinct_ids(location: str) -> dict[str, int]:
    """Rows and distinct event ids of the sink's table (its events keep the envelope's event_id)."""
    import pyarrow.compute as pc
    from pyiceberg.table import StaticTable

    tbl = StaticTable.from_metadata(location).scan(selected_fields=("event_id",)).to_arrow()
    return {"rows": tbl.num_rows, "distinct_event_ids": int(pc.count_distinct(tbl["event_id"]).as_py())}

