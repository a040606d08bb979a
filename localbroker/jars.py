"""The broker's jars, from Maven Central through ``deploy/kafka/pom.xml``, resolved once into
``.cache/kafka/<version>/libs`` (``$KAFKA_LIBS_DIR`` short-circuits it)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from localbroker.errors import BrokerError

__all__ = ["cache_root", "deploy_dir", "ensure_kafka_jars", "java_executable", "kafka_version"]

log = logging.getLogger("tpipe.broker")

_PKG_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PKG_DIR.parent
_MARKER = ".tpipe-resolved"


def deploy_dir() -> Path:
    """``deploy/kafka`` in a source checkout, ``localbroker/_deploy_kafka`` in an installed wheel."""
    for cand in (_REPO_ROOT / "deploy" / "kafka", _PKG_DIR / "_deploy_kafka"):
        if (cand / "pom.xml").is_file():
            return cand
    raise BrokerError("deploy/kafka/pom.xml not found (neither in the source tree nor in the package)")


def cache_root() -> Path:
    """Where resolved jars live: ``$TPIPE_KAFKA_CACHE``, else ``<repo>/.cache/kafka``, else ``~/.cache``."""
    env = os.environ.get("TPIPE_KAFKA_CACHE")
    if env:
        return Path(env)
    if (_REPO_ROOT / "deploy" / "kafka" / "pom.xml").is_file():
        return _REPO_ROOT / ".cache" / "kafka"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tpipe" / "kafka"


def kafka_version() -> str:
    """The Kafka version pinned in ``deploy/kafka/pom.xml`` (the single source of truth)."""
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", (deploy_dir() / "pom.xml").read_text())
    if not m:
        raise BrokerError("no <kafka.version> property in deploy/kafka/pom.xml")
    return m.group(1)


def _maven_repo_args() -> list[str]:
    """Default ~/.m2 unless it is unusable (then ``.cache/m2`` beside the jar cache)."""
    if os.environ.get("TPIPE_MAVEN_REPO_LOCAL"):
        return [f"-Dmaven.repo.local={os.environ['TPIPE_MAVEN_REPO_LOCAL']}"]
    m2 = Path.home() / ".m2"
    if (m2.is_dir() and os.access(m2, os.W_OK)) or (not m2.exists() and os.access(Path.home(), os.W_OK)):
        return []
    return [f"-Dmaven.repo.local={cache_root().parent / 'm2'}"]


def ensure_kafka_jars(*, force: bool = False) -> Path:
    """Return the directory holding the broker's jars, running Maven only if they are not there yet.

    ``$KAFKA_LIBS_DIR`` (a ready ``libs/`` dir) short-circuits everything. Otherwise the jars are copied
    by ``deploy/kafka/pom.xml`` into ``<cache>/<version>/libs``; a marker file holding a hash of the pom
    says the copy completed, so later calls skip Maven entirely. Safe to call from several processes.
    """
    env = os.environ.get("KAFKA_LIBS_DIR")
    if env:
        libs = Path(env)
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"KAFKA_LIBS_DIR={env} holds no kafka_2.13-*.jar")
        return libs
    pom = deploy_dir() / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    version = kafka_version()
    vdir = cache_root() / version
    libs = vdir / "libs"
    marker = libs / _MARKER

    def done() -> bool:
        return not force and marker.is_file() and marker.read_text().strip() == digest

    if done():
        return libs
    vdir.mkdir(parents=True, exist_ok=True)
    with open(vdir / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if done():  # another process finished while we waited for the lock
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH: it is needed once to fetch the Kafka jars")
        tmp = vdir / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-B", "-q", "-f", str(pom), *_maven_repo_args(), "package", f"-Dkafka.libs.dir={tmp}"]
        log.info("resolving kafka jars version=%s dir=%s", version, libs)
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
        except subprocess.TimeoutExpired as e:
            raise BrokerError(f"Maven timed out resolving Kafka {version}: {' '.join(cmd)}") from e
        if res.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            out = (res.stdout + res.stderr).strip().splitlines()[-40:]
            raise BrokerError(
                f"Maven failed (rc={res.returncode}) resolving Kafka {version}:\n  {' '.join(cmd)}\n"
                + "\n".join(out)
            )
        (tmp / _MARKER).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        log.info(
            "resolved kafka jars version=%s jars=%d seconds=%.1f",
            version,
            len(list(libs.glob("*.jar"))),
            time.monotonic() - t0,
        )
    return libs


def java_executable() -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java (17+) is not on PATH and JAVA_HOME is not set")
    return java
