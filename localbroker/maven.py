"""Jars from Maven Central through a small pom, resolved once into a cache folder.

The recipe of the broker's jars (``deploy/kafka/pom.xml``) and of the Spark-side Iceberg runtime the
lake tests read with (``deploy/spark/pom.xml``): ``mvn package`` copies the pom's dependencies into a
folder given as a pom property; a marker file holding a hash of the pom says the copy completed, so
later calls skip Maven entirely. Safe to call from several processes (a file lock; a temporary folder
renamed into place).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from localbroker.errors import BrokerError

__all__ = ["resolve_pom"]

log = logging.getLogger("tpipe.broker")

_MARKER = ".tpipe-resolved"


def _maven_repo_args(cache: Path) -> list[str]:
    """Default ~/.m2 unless it is unusable (then ``<cache>/m2``: ``.cache/m2`` in a checkout)."""
    if os.environ.get("TPIPE_MAVEN_REPO_LOCAL"):
        return [f"-Dmaven.repo.local={os.environ['TPIPE_MAVEN_REPO_LOCAL']}"]
    m2 = Path.home() / ".m2"
    if (m2.is_dir() and os.access(m2, os.W_OK)) or (not m2.exists() and os.access(Path.home(), os.W_OK)):
        return []
    return [f"-Dmaven.repo.local={cache / 'm2'}"]


def resolve_pom(pom: Path, dest: Path, *, dir_property: str, expect: str, what: str, force: bool = False) -> Path:
    """Return ``dest`` holding the pom's jars, running Maven only if they are not there yet.

    ``dir_property`` is the pom property naming the output folder; ``expect`` a glob one of the jars
    must match for the copy to count (``kafka_2.13-*.jar``).
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    marker = dest / _MARKER

    def done() -> bool:
        return not force and marker.is_file() and marker.read_text().strip() == digest

    if done():
        return dest
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if done():  # another process finished while we waited for the lock
            return dest
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(f"Maven (mvn) is not on PATH: it is needed once to fetch {what}")
        tmp = parent / f"{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-B", "-q", "-f", str(pom), *_maven_repo_args(parent.parent.parent), "package", f"-D{dir_property}={tmp}"]
        log.info("resolving %s dir=%s", what, dest)
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
        except subprocess.TimeoutExpired as e:
            raise BrokerError(f"Maven timed out resolving {what}: {' '.join(cmd)}") from e
        if res.returncode != 0 or not any(tmp.glob(expect)):
            shutil.rmtree(tmp, ignore_errors=True)
            out = (res.stdout + res.stderr).strip().splitlines()[-40:]
            raise BrokerError(
                f"Maven failed (rc={res.returncode}) resolving {what}:\n  {' '.join(cmd)}\n" + "\n".join(out)
            )
        (tmp / _MARKER).write_text(digest + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        log.info("resolved %s jars=%d seconds=%.1f", what, len(list(dest.glob("*.jar"))), time.monotonic() - t0)
    return dest
