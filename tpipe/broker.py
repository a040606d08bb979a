"""A real single-node Apache Kafka 4.x broker (KRaft) for development and tests: no Docker, no tarball.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml`` (resolved once into
``.cache/kafka/<version>/libs``); the config is rendered from ``deploy/kafka/server.properties.template``
into a data directory, the storage is formatted once (static quorum, no ``--standalone``) and
``java ... kafka.Kafka`` runs with its output in ``<data-dir>/broker.log``.

    with LocalBroker() as broker:            # free ports, temporary data dir
        settings = broker.client_settings()  # tpipe.settings.KafkaSettings for the PLAINTEXT listener
        ...

A persistent ``data_dir`` survives restarts: ``kill()`` (SIGKILL) then ``restart()`` comes back on the
same directory and the same ports with the data intact. ``sasl=True`` adds a SASL_PLAINTEXT listener
with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one user (``username``/``password``).

Command line: ``python -m tpipe.broker [--port 9092] [--data-dir DIR] [--sasl]`` or
``python -m tpipe.broker --resolve-only`` (just fetch the jars; prints the libs dir).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tpipe.settings import KafkaSettings, SaslMechanism

log = logging.getLogger("tpipe.broker")

T = TypeVar("T")

_PKG_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PKG_DIR.parent
_MARKER = ".tpipe-resolved"
_STATE_FILE = "tpipe-broker.json"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_HEAP = ("-Xms256m", "-Xmx768m")


class BrokerError(RuntimeError):
    """The local broker could not be resolved, formatted, started or reached."""


# --------------------------------------------------------------------------------------------- jars


def deploy_dir() -> Path:
    """``deploy/kafka`` in a source checkout, ``tpipe/_deploy_kafka`` in an installed wheel."""
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


# -------------------------------------------------------------------------------------------- ports


def free_port() -> int:
    """A port free on 127.0.0.1 right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _random_cluster_id() -> str:
    """Like ``org.apache.kafka.common.Uuid.randomUuid()``: 22 url-safe base64 chars, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _run_coro(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())  # type: ignore[arg-type]
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="tpipe-broker-probe", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


_LIVE: set[LocalBroker] = set()


@atexit.register
def _stop_live_brokers() -> None:
    for b in list(_LIVE):
        with contextlib.suppress(Exception):
            b.stop(timeout=15)


# ------------------------------------------------------------------------------------------- broker


class LocalBroker:
    """One Kafka 4.x node (broker+controller) on 127.0.0.1, run from Maven-resolved jars.

    ``port``/``controller_port``/``sasl_port`` = 0 picks free ports (kept across ``restart()``; with a
    persistent ``data_dir`` the previous run's ports are reused when still free). ``data_dir=None``
    uses a temporary directory removed by ``cleanup()`` / the context manager.
    """

    def __init__(
        self,
        port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        controller_port: int = 0,
        sasl: bool = False,
        sasl_port: int = 0,
        username: str = "tpipe",
        password: str | None = None,
        heap: tuple[str, ...] = DEFAULT_HEAP,
        start_timeout: float = 120.0,
        overrides: dict[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self._req_port = port
        self._req_cport = controller_port
        self._req_sport = sasl_port
        self.sasl = sasl
        self.username = username
        self._req_password = password
        self.password = password or ""
        self.heap = heap
        self.start_timeout = start_timeout
        self.overrides = dict(overrides or {})
        self.die_with_parent = die_with_parent
        self._owned_dir = data_dir is None
        self._data_dir: Path | None = Path(data_dir).resolve() if data_dir is not None else None
        self.port = 0
        self.controller_port = 0
        self.sasl_port = 0
        self.cluster_id = ""
        self.startup_seconds: float | None = None
        self.last_stop_clean: bool | None = None  # True: the last stop() ended on SIGTERM, no SIGKILL
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None
        self._log_offset = 0

    # -- paths and addresses --------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="tpipe-kafka-"))
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the PLAINTEXT listener."""
        if not self.port:
            raise BrokerError("broker ports are not assigned yet: call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the SASL_PLAINTEXT listener (only with ``sasl=True``)."""
        if not self.sasl:
            raise BrokerError("this broker has no SASL listener (LocalBroker(sasl=True))")
        if not self.sasl_port:
            raise BrokerError("broker ports are not assigned yet: call start() first")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client_settings(self, mechanism: SaslMechanism | None = None, **fields: Any) -> KafkaSettings:
        """KafkaSettings for this broker: PLAINTEXT, or SASL_PLAINTEXT with ``mechanism`` and our user.

        Security fields are set explicitly so ``TPIPE_*`` environment variables cannot leak in.
        """
        base: dict[str, Any] = {
            "kafka": self.bootstrap,
            "kafka_security_protocol": "PLAINTEXT",
            "kafka_sasl_mechanism": None,
            "kafka_sasl_username": None,
            "kafka_sasl_password": None,
            "kafka_ssl_cafile": None,
            "kafka_ssl_certfile": None,
            "kafka_ssl_keyfile": None,
        }
        if mechanism is not None:
            base.update(
                kafka=self.sasl_bootstrap,
                kafka_security_protocol="SASL_PLAINTEXT",
                kafka_sasl_mechanism=mechanism,
                kafka_sasl_username=self.username,
                kafka_sasl_password=self.password,
            )
        base.update(fields)
        return KafkaSettings(**base)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> LocalBroker:
        """Resolve jars, render config, format storage if needed, launch, and wait until it serves."""
        if self.is_running():
            return self
        t0 = time.monotonic()
        libs = ensure_kafka_jars()
        self._prepare(libs)
        self._launch(libs)
        try:
            self._wait_ready(t0 + self.start_timeout)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - t0
        log.info(
            "kafka broker ready bootstrap=%s sasl_bootstrap=%s pid=%s data_dir=%s startup_s=%.2f",
            self.bootstrap,
            f"127.0.0.1:{self.sasl_port}" if self.sasl else "-",
            self.pid,
            self.data_dir,
            self.startup_seconds,
        )
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Kafka's shutdown hook does a clean shutdown), wait, then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            log.info("stopping kafka broker pid=%d", proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
                self.last_stop_clean = True
            except subprocess.TimeoutExpired:
                log.warning("kafka broker pid=%d ignored SIGTERM for %.0fs: killing", proc.pid, timeout)
                proc.kill()
                proc.wait()
                self.last_stop_clean = False
        self._release()
        log.info("kafka broker stopped pid=%d rc=%s", proc.pid, proc.returncode)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests) and reap it. Data dir and ports are kept."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            log.info("killing kafka broker pid=%d (SIGKILL)", proc.pid)
            proc.kill()
            self.last_stop_clean = False
        proc.wait()
        self._release()

    def restart(self) -> LocalBroker:
        """Start again on the same data dir and ports (stopping cleanly first if still running)."""
        if self.is_running():
            self.stop()
        return self.start()

    def wait(self, timeout: float | None = None) -> int:
        """Block until the broker process exits; returns its exit code."""
        if self._proc is None:
            raise BrokerError("broker not started")
        return self._proc.wait(timeout)

    def cleanup(self) -> None:
        """Stop, and delete the data dir if it is a temporary one this object created."""
        self.stop()
        if self._owned_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    async def astart(self) -> LocalBroker:
        return await asyncio.to_thread(self.start)

    async def astop(self, timeout: float = 30.0) -> int | None:
        return await asyncio.to_thread(self.stop, timeout)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def arestart(self) -> LocalBroker:
        return await asyncio.to_thread(self.restart)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 60, *, since_last_start: bool = True) -> str:
        """The last lines of ``broker.log`` (by default only what the latest launch wrote)."""
        try:
            with open(self.log_path, "rb") as f:
                if since_last_start:
                    f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return "(no broker log)"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    # -- internals --------------------------------------------------------------------------------
    def _release(self) -> None:
        _LIVE.discard(self)
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    def _load_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.data_dir / _STATE_FILE).read_text()))
        except (OSError, ValueError):
            return {}

    def _pick_port(self, requested: int, previous: int | None, taken: set[int]) -> int:
        if requested:
            return requested
        if previous and previous not in taken and _port_is_free(previous):
            return previous
        while True:
            p = free_port()
            if p not in taken:
                return p

    def _prepare(self, libs: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        formatted = (self.kraft_dir / "meta.properties").is_file()
        if formatted and self.sasl and not state.get("sasl"):
            raise BrokerError(
                f"{self.data_dir} was formatted without SASL users; use a fresh data dir for sasl=True"
            )
        if not self.port:  # first start of this object: later restarts keep the same ports
            taken: set[int] = set()
            self.port = self._pick_port(self._req_port, state.get("port"), taken)
            taken.add(self.port)
            self.controller_port = self._pick_port(self._req_cport, state.get("controller_port"), taken)
            taken.add(self.controller_port)
            if self.sasl:
                self.sasl_port = self._pick_port(self._req_sport, state.get("sasl_port"), taken)
        self.cluster_id = state.get("cluster_id") or _random_cluster_id()
        if self.sasl:
            self.password = state.get("password") or self._req_password or secrets.token_hex(12)
            self.username = state.get("username") or self.username
        state.update(
            cluster_id=self.cluster_id,
            kafka_version=kafka_version(),
            port=self.port,
            controller_port=self.controller_port,
            sasl_port=self.sasl_port or None,
            sasl=bool(state.get("sasl")) if formatted else self.sasl,
            username=self.username if self.sasl else state.get("username"),
            password=self.password if self.sasl else state.get("password"),
        )
        (self.data_dir / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        self.config_path.write_text(self._render())
        if not formatted:
            self._format(libs)

    def _render(self) -> str:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        extra: list[str] = []
        if self.sasl:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            plain_jaas = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{self.username}" password="{self.password}" '
                f'user_{self.username}="{self.password}";'
            )
            scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            extra += [
                "# SASL_PLAINTEXT listener: PLAIN (user in JAAS) and SCRAM (users stored at format time)",
                "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                f"listener.name.sasl_plaintext.plain.sasl.jaas.config={plain_jaas}",
                f"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram_jaas}",
                f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={scram_jaas}",
            ]
        if self.overrides:
            extra.append("# overrides")
            extra += [f"{k}={v}" for k, v in self.overrides.items()]
        template = string.Template((deploy_dir() / "server.properties.template").read_text())
        return template.substitute(
            controller_port=self.controller_port,
            listeners=",".join(listeners),
            advertised_listeners=",".join(advertised),
            log_dirs=str(self.kraft_dir),
            extra="\n".join(extra),
        )

    def _java(self) -> str:
        home = os.environ.get("JAVA_HOME")
        if home and (Path(home) / "bin" / "java").is_file():
            return str(Path(home) / "bin" / "java")
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java (17+) is not on PATH and JAVA_HOME is not set")
        return java

    def _format(self, libs: Path) -> None:
        cmd = [
            self._java(),
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self.cluster_id}",
            "-c",
            str(self.config_path),
        ]
        if self.sasl:
            for mech in SCRAM_MECHANISMS:
                cmd += ["--add-scram", f"{mech}=[name={self.username},password={self.password}]"]
        t0 = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        (self.data_dir / "format.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
            raise BrokerError(
                f"kafka storage format failed (rc={res.returncode}) in {self.data_dir}:\n{tail}"
            )
        log.info(
            "formatted kafka storage dir=%s cluster_id=%s seconds=%.2f",
            self.kraft_dir,
            self.cluster_id,
            time.monotonic() - t0,
        )

    def _launch(self, libs: Path) -> None:
        for p in (self.port, self.controller_port, self.sasl_port):
            if p and _tcp_open(p, timeout=0.2):
                raise BrokerError(f"port 127.0.0.1:{p} is already in use: another broker still running?")
        cmd = [
            self._java(),
            *self.heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.data_dir}",
            f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.config_path),
        ]
        self._log_fh = open(self.log_path, "ab")
        self._log_offset = self._log_fh.tell()
        self._log_fh.write(
            f"\n==== tpipe: launching kafka at {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode()
        )
        self._log_fh.flush()
        self._log_offset = self._log_fh.tell()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # a Ctrl-C in a terminal reaches us; we stop the broker ourselves
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        _LIVE.add(self)
        log.info(
            "launched kafka broker pid=%d port=%d controller_port=%d",
            self._proc.pid,
            self.port,
            self.controller_port,
        )

    def _check_alive(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            rc = proc.returncode if proc is not None else None
            raise BrokerError(
                f"kafka broker exited during start-up (rc={rc}); log {self.log_path}:\n{self.log_tail()}"
            )

    def _wait_ready(self, deadline: float) -> None:
        """TCP connect (the socket opens only once the broker is unfenced), then a real metadata request."""
        assert self._proc is not None
        while not _tcp_open(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"kafka broker did not open 127.0.0.1:{self.port} within {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(0.1)  # wakes at once if the process dies
        _run_coro(lambda: self._probe(deadline))

    async def _probe(self, deadline: float) -> None:
        from tpipe.kafka_clients import make_admin

        settings = self.client_settings(kafka_client_id="tpipe-broker-probe")
        last: BaseException | None = None
        while True:
            self._check_alive()
            admin = make_admin(settings, request_timeout_ms=5000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                await admin.list_topics()
                if cluster.get("brokers"):
                    return
                last = BrokerError(f"metadata lists no brokers yet: {cluster}")
            except Exception as e:  # not ready yet: retry until the deadline
                last = e
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"kafka broker on {self.bootstrap} accepts connections but does not answer metadata "
                    f"requests ({last!r}); log {self.log_path}:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)  # retry back-off between probes, not a readiness wait


@contextlib.contextmanager
def running_broker(**kwargs: Any) -> Iterator[LocalBroker]:
    """``with running_broker(sasl=True) as b: ...`` — a started LocalBroker, stopped and cleaned after."""
    broker = LocalBroker(**kwargs)
    try:
        yield broker.start()
    finally:
        broker.cleanup()


# ---------------------------------------------------------------------------------------------- CLI


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def broker_main(port: int = 9092, data_dir: Path | None = None, *, sasl: bool = False) -> int:
    """``tpipe broker``: run a broker in the foreground until Ctrl-C/SIGTERM; returns the exit code.

    Prints the bootstrap address (one line, ``127.0.0.1:PORT``) once the broker serves requests; with
    ``sasl`` a second line ``sasl 127.0.0.1:PORT user password``. Exit 0 after a clean stop, 1 if the
    broker could not start or died on its own. If this process is SIGKILLed the broker dies with it.
    """
    broker = LocalBroker(port=port, data_dir=data_dir, sasl=sasl, die_with_parent=True)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            broker.start()
            print(broker.bootstrap, flush=True)
            if sasl:
                print(f"sasl {broker.sasl_bootstrap} {broker.username} {broker.password}", flush=True)
            rc = broker.wait()
            log.error(
                "kafka broker exited on its own rc=%s; log %s:\n%s", rc, broker.log_path, broker.log_tail()
            )
            return 1
        except KeyboardInterrupt:
            log.info("interrupted: stopping kafka broker")
            return 0
        except BrokerError as e:
            log.error("%s", e)
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        finally:
            broker.stop()
            if data_dir is None:
                broker.cleanup()
    finally:
        signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tpipe.broker", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9092, help="PLAINTEXT port (0: a free one)")
    ap.add_argument("--data-dir", type=Path, default=None, help="persistent data dir (default: temporary)")
    ap.add_argument("--sasl", action="store_true", help="add a SASL_PLAINTEXT listener (PLAIN, SCRAM)")
    ap.add_argument("--resolve-only", action="store_true", help="only fetch the jars; print the libs dir")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.resolve_only:
        try:
            libs = ensure_kafka_jars()
        except BrokerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(libs)
        return 0
    return broker_main(args.port, args.data_dir, sasl=args.sasl)


if __name__ == "__main__":
    sys.exit(main())
