"""The forwarder in its own process (``--forwarder process``, the default).

The receiver's request path then only checks and spools each body; parsing, validation, record
building and publishing — most of the CPU per event — run in a child process that can use another
core. The receiver stays the only writer of the spool directory (segments, cursor, deletions); the
child only reads segments. They talk over the child's stdin/stdout, one JSON array per line:

* receiver -> child: first an init object (settings, cursor, committed sizes), then
  ``[segment, committed_size]`` after every group commit. EOF means stop.
* child -> receiver: ``["a", segment, offset, spool_records]`` once Kafka took everything before
  that position (the receiver persists the cursor and frees segments), ``["f", events, counts,
  latency_s]`` for metrics, ``["s", broker_up, last_error, publish_started_monotonic]`` for health.

If the child dies it is restarted from the durable cursor (records Kafka took but the cursor did not
record yet are sent again, with the same ``event_id``s). If the receiver dies, the child sees EOF and
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from ingest.forwarder import record_down_metrics, record_forwarded_metrics, wait_forwarded
from ingest.settings import IngestSettings
from ingest.spool.files import Position
from ingest.spool.log import Spool

log = logging.getLogger("tpipe.forwarder")

_CHILD_MODULE = "ingest.forward_child"


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def settings_payload(settings: IngestSettings) -> dict[str, Any]:
    """The settings as plain JSON values for the child (secrets included: they travel over a pipe,
    never a log line or the command line); webhook tokens stay with the receiver."""
    return {k: _plain(v) for k, v in settings.model_dump().items() if k not in ("token", "tokens_file")}


class ForwarderProcess:
    """Receiver side: starts and supervises the child, feeds it commits, applies its reports.

    Same surface as ``Forwarder`` for the app: ``run``, ``broker_reachable``, ``last_error``,
    ``publish_pending_s``, ``drain``, ``close``.
    """

    def __init__(self, settings: IngestSettings, spool: Spool) -> None:
        self.settings = settings
        self.spool = spool
        self.broker_up = False
        self.last_error: str | None = None
        self.forwarded = 0
        self.restarts = 0
        self._publish_started: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._stopping = False
        self._advanced = asyncio.Event()
        spool.listeners.append(self._on_commit)

    # ---- health (same meaning as Forwarder's) ---------------------------------------------------
    def broker_reachable(self, stall_after_s: float) -> bool:
        pending = self.publish_pending_s()
        return self.broker_up and (pending is None or pending <= stall_after_s)

    def publish_pending_s(self) -> float | None:
        started = self._publish_started
        return None if started is None else round(max(0.0, time.monotonic() - started), 3)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- feed ------------------------------------------------------------------------------------
    def _on_commit(self, segment: int, size: int) -> None:
        w = self._stdin
        if w is not None and not w.is_closing():
            w.write(b"[%d,%d]\n" % (segment, size))

    # ---- supervision -----------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            try:
                rc = await self._run_child()
            except Exception as exc:  # could not even start it: keep trying, the spool holds everything
                rc = None
                self.last_error = f"forwarder process failed to start: {type(exc).__name__}: {exc}"
                log.error("forwarder process failed to start", extra={"error": str(exc)})
            if self._stopping:
                break
            self.restarts += 1
            self.broker_up, self._publish_started = False, None
            if rc is not None:
                self.last_error = f"forwarder process exited with code {rc}"
                log.error("forwarder process exited, restarting it", extra={"returncode": rc, "restarts": self.restarts})
            record_down_metrics()
            if time.monotonic() - started > 30:
                backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _run_child(self) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", _CHILD_MODULE,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        # No await between the snapshot and attaching the feed: no commit can fall in between.
        sizes, active = self.spool.committed_sizes()
        cursor = self.spool.cursor
        init = {
            "settings": settings_payload(self.settings),
            "cursor": [cursor.segment, cursor.offset],
            "sizes": [[s, n] for s, n in sizes.items()],
            "active": active,
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        }
        proc.stdin.write(orjson.dumps(init) + b"\n")
        self._stdin = proc.stdin
        log.info("forwarder process started", extra={"pid": proc.pid, "cursor": init["cursor"]})
        try:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                self._on_message(orjson.loads(line))
        finally:
            self._stdin = None
            with contextlib.suppress(Exception):
                proc.stdin.close()
        return await proc.wait()

    def _on_message(self, m: list[Any]) -> None:
        kind = m[0]
        if kind == "a":
            self.spool.advance(Position(m[1], m[2]), m[3])
            self._advanced.set()
        elif kind == "f":
            self.broker_up, self.last_error = True, None
            self.forwarded += m[1]
            record_forwarded_metrics(m[1], m[2], m[3])
        elif kind == "s":
            was_up = self.broker_up
            self.broker_up, self.last_error, self._publish_started = m[1], m[2], m[3]
            if was_up and not self.broker_up:
                record_down_metrics()

    # ---- shutdown --------------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is fully forwarded or ``timeout_s`` passes; True if drained."""
        return await wait_forwarded(self.spool.has_unforwarded, self._advanced, timeout_s)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child: EOF on its stdin, then it finishes its chunk and exits (killed after ``timeout_s``)."""
        self._stopping = True
        proc, w = self._proc, self._stdin
        if w is not None:
            with contextlib.suppress(Exception):
                w.close()
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), timeout=timeout_s)
        except TimeoutError:
            log.warning("forwarder process did not stop in time; killing it", extra={"pid": proc.pid})
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def parse_cpus(spec: str) -> set[int]:
    """'1', '0,2', '2-3' -> a CPU set (os.sched_setaffinity's argument)."""
    cpus: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    if not cpus:
        raise ValueError(f"empty CPU list {spec!r}")
    return cpus
