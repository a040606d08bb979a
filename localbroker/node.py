"""A real Apache Kafka 4.x node (KRaft, broker+controller) for development and tests: no Docker,
no tarball.

The jars come from Maven Central (``localbroker.jars``); the config is rendered into a data directory
(``localbroker.config``), the storage is formatted once (static quorum, no ``--standalone``) and
``java ... kafka.Kafka`` runs with its output in ``<data-dir>/broker.log``.

    with LocalBroker() as broker:            # free ports, temporary data dir
        settings = broker.client_settings()  # plumbing.settings.KafkaSettings for the PLAINTEXT listener
        ...

A persistent ``data_dir`` survives restarts: ``kill()`` (SIGKILL) then ``restart()`` comes back on the
same directory and the same ports with the data intact. ``sasl=True`` adds a SASL_PLAINTEXT listener
with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one user (``username``/``password``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localbroker.config import (
    Membership,
    NodeConfig,
    format_storage,
    kafka_command,
    random_cluster_id,
    render_properties,
)
from localbroker.errors import BrokerError
from localbroker.jars import ensure_kafka_jars, kafka_version
from localbroker.ports import load_state, pick_port, tcp_open
from localbroker.process import die_with_parent, forget_running, note_running
from localbroker.readiness import probe_metadata, run_coro
from plumbing.settings import KafkaSettings, SaslMechanism

__all__ = ["DEFAULT_HEAP", "LocalBroker", "running_broker"]

log = logging.getLogger("tpipe.broker")

_STATE_FILE = "tpipe-broker.json"
DEFAULT_HEAP = ("-Xms256m", "-Xmx768m")


class LocalBroker:
    """One Kafka 4.x node (broker+controller) on 127.0.0.1, run from Maven-resolved jars.

    ``port``/``controller_port``/``sasl_port`` = 0 picks free ports (kept across ``restart()``; with a
    persistent ``data_dir`` the previous run's ports are reused when still free). ``data_dir=None``
    uses a temporary directory removed by ``cleanup()`` / the context manager. ``membership`` makes
    it one node of a local cluster (``localbroker.cluster.LocalCluster`` sets it, with fixed ports).
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
        membership: Membership | None = None,
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
        self.membership = membership
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
        self.launch()
        self.wait_ready(t0 + self.start_timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def launch(self) -> LocalBroker:
        """Everything ``start`` does except waiting: a cluster launches all its nodes, then waits
        (a node serves only once a majority of the controller quorum runs)."""
        if not self.is_running():
            libs = ensure_kafka_jars()
            self._prepare(libs)
            self._launch(libs)
        return self

    def wait_ready(self, deadline: float) -> None:
        """Until the launched node serves requests (SIGKILLed if it does not by ``deadline``)."""
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise
        log.info(
            "kafka broker ready bootstrap=%s sasl_bootstrap=%s pid=%s data_dir=%s",
            self.bootstrap,
            f"127.0.0.1:{self.sasl_port}" if self.sasl else "-",
            self.pid,
            self.data_dir,
        )

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
        forget_running(self)
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    def _prepare(self, libs: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = load_state(self.data_dir / _STATE_FILE)
        formatted = (self.kraft_dir / "meta.properties").is_file()
        if formatted and self.sasl and not state.get("sasl"):
            raise BrokerError(
                f"{self.data_dir} was formatted without SASL users; use a fresh data dir for sasl=True"
            )
        if not self.port:  # first start of this object: later restarts keep the same ports
            taken: set[int] = set()
            self.port = pick_port(self._req_port, state.get("port"), taken)
            taken.add(self.port)
            self.controller_port = pick_port(self._req_cport, state.get("controller_port"), taken)
            taken.add(self.controller_port)
            if self.sasl:
                self.sasl_port = pick_port(self._req_sport, state.get("sasl_port"), taken)
        member = self.membership
        if member is not None and formatted and state.get("cluster_id") not in (None, member.cluster_id):
            raise BrokerError(f"{self.data_dir} belongs to another cluster ({state.get('cluster_id')})")
        self.cluster_id = (member.cluster_id if member else None) or state.get("cluster_id") or random_cluster_id()
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
        cfg = self.node_config()
        self.config_path.write_text(render_properties(cfg))
        if not formatted:
            format_storage(libs, cfg, config_path=self.config_path, cluster_id=self.cluster_id,
                           log_file=self.data_dir / "format.log")

    def node_config(self) -> NodeConfig:
        return NodeConfig(self.port, self.controller_port, self.kraft_dir, self.sasl_port if self.sasl else 0,
                          self.username, self.password, self.overrides, self.membership)

    def _launch(self, libs: Path) -> None:
        for p in (self.port, self.controller_port, self.sasl_port):
            if p and tcp_open(p, timeout=0.2):
                raise BrokerError(f"port 127.0.0.1:{p} is already in use: another broker still running?")
        cmd = kafka_command(libs, self.heap, self.data_dir, self.config_path)
        self._log_fh = open(self.log_path, "ab")
        self._log_offset = self._log_fh.tell()
        self._log_fh.write(f"\n==== tpipe: launching kafka at {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode())
        self._log_fh.flush()
        self._log_offset = self._log_fh.tell()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # a Ctrl-C in a terminal reaches us; we stop the broker ourselves
            preexec_fn=die_with_parent if self.die_with_parent else None,
        )
        note_running(self)
        log.info("launched kafka broker pid=%d port=%d controller_port=%d", self._proc.pid, self.port,
                 self.controller_port)

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
        while not tcp_open(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"kafka broker did not open 127.0.0.1:{self.port} within {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(0.1)  # wakes at once if the process dies
        settings = self.client_settings(kafka_client_id="tpipe-broker-probe")
        run_coro(lambda: probe_metadata(settings, deadline, self._check_alive,
                                        lambda: f"{self.bootstrap}; log {self.log_path}:\n{self.log_tail()}"))


@contextlib.contextmanager
def running_broker(**kwargs: Any) -> Iterator[LocalBroker]:
    """``with running_broker(sasl=True) as b: ...`` — a started LocalBroker, stopped and cleaned after."""
    broker = LocalBroker(**kwargs)
    try:
        yield broker.start()
    finally:
        broker.cleanup()
