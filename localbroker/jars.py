"""The broker's jars, from Maven Central through ``deploy/kafka/pom.xml``, resolved once into
``.cache/kafka/<version>/libs`` (``$KAFKA_LIBS_DIR`` short-circuits it)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from localbroker.errors import BrokerError
from localbroker.maven import resolve_pom

__all__ = ["cache_root", "deploy_dir", "ensure_kafka_jars", "java_executable", "kafka_version"]

_PKG_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PKG_DIR.parent


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


def ensure_kafka_jars(*, force: bool = False) -> Path:
    """Return the directory holding the broker's jars, running Maven only if they are not there yet.

    ``$KAFKA_LIBS_DIR`` (a ready ``libs/`` dir) short-circuits everything. Otherwise the jars are copied
    by ``deploy/kafka/pom.xml`` into ``<cache>/<version>/libs`` (``localbroker.maven.resolve_pom``).
    """
    env = os.environ.get("KAFKA_LIBS_DIR")
    if env:
        libs = Path(env)
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"KAFKA_LIBS_DIR={env} holds no kafka_2.13-*.jar")
        return libs
    version = kafka_version()
    return resolve_pom(deploy_dir() / "pom.xml", cache_root() / version / "libs", dir_property="kafka.libs.dir",
                       expect="kafka_2.13-*.jar", what=f"kafka jars version={version}", force=force)


def java_executable() -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java (17+) is not on PATH and JAVA_HOME is not set")
    return java
