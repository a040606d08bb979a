"""The forwarder in its own process (``--forwarder process``, the default).

The receiver's request path then only checks and spools each body; parsing, validation, record
building and publishing — most of the CPU per event — run in a child process that can use another
core. The receiver stays the only writer of the spool directory (segments, cursor, deletions); the
child only reads segments. They talk over the child's stdin/stdout, one JSON array per line:

* receiver -> child: first an init object (settings, cursor, committed sizes), then
  ``[segment, committed_size]`` after every group commit. EOF means stop.
* child -> receiver: ``["a", segment, offset, spool_records]`` once Kafka took everything before
  that position (the receiver persists the cursor and frees segments), ``["f", events, counts,
  latency_s, tally]`` for metrics, ``ForwarderState.report()`` (``["s", ...]``) for health.
* The init object may ask the child to forward one body at a time first (``careful_bodies``, after
  a death) or to dead-letter the body at the cursor unparsed (``quarantine``, after repeated deaths).

If the child dies — or its forwarding ends by itself, which it reports by exiting non-zero — it is
logged, counted (``tpipe_forwarder_restarts_total``) and restarted from the durable cursor (records
Kafka took but the cursor did not record yet are sent again, with the same ``event_id``s). If the
receiver dies, the child sees EOF and exits.
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

from ingest.forward.forwarder import wait_forwarded
from ingest.forward.health import (
    ForwarderState,
    Supervision,
    apply_tally,
    record_down_metrics,
    record_forwarded_metrics,
)
from ingest.settings import IngestSettings
from ingest.spool.files import Position
from ingest.spool.log import Spool
from plumbing.retry import Backoff

log = logging.getLogger("tpipe.forwarder")

_CHILD_MODULE = "ingest.forward.child"


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

    After a death the next child forwards one body at a time for a while (``careful_bodies``), so a
    second death names the exact body; after ``forwarder_quarantine_after`` deaths at one position
    the next child sends that body to the DLQ as received before forwarding on.
    """

    mode = "process"

    def __init__(self, settings: IngestSettings, spool: Spool) -> None:
        self.settings = settings
        self.spool = spool
        self.state = ForwarderState()
        self.supervision = Supervision()
        self._forwarded = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._stopping = False
        self._advanced = asyncio.Event()
        spool.listeners.append(self._on_commit)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def forwarded(self) -> int:
        return self._forwarded

    # ---- feed ------------------------------------------------------------------------------------
    def _on_commit(self, segment: int, size: int) -> None:
        w = self._stdin
        if w is not None and not w.is_closing():
            w.write(b"[%d,%d]\n" % (segment, size))

    # ---- supervision -----------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = Backoff(0.5, cap=10.0)
        while not self._stopping:
            started = time.monotonic()
            try:
                rc = await self._run_child()
                why = f"forwarder process exited with code {rc}"
            except Exception as exc:  # could not even start it: keep trying, the spool holds everything
                why = f"forwarder process failed to start: {type(exc).__name__}: {exc}"
            if self._stopping:
                break
            self.supervision.died(self.spool.cursor, why)
            self.state.broker_up, self.state.publish_started = False, None
            self.state.last_error = why
            log.error("forwarder process ended, restarting it",
                      extra={"reason": why, "restarts": self.supervision.restarts,
                             "deaths_at_this_position": self.supervision.deaths_here,
                             "spool_position": [self.spool.cursor.segment, self.spool.cursor.offset]})
            record_down_metrics()
            if time.monotonic() - started > 30:
                backoff.reset()  # it ran a while: this death is not part of a crash loop
            await asyncio.sleep(backoff.next())

    def _init(self) -> dict[str, Any]:
        sizes, active = self.spool.committed_sizes()
        cursor = self.spool.cursor
        s, sup = self.settings, self.supervision
        init: dict[str, Any] = {
            "settings": settings_payload(s),
            "cursor": [cursor.segment, cursor.offset],
            "sizes": [[seg, n] for seg, n in sizes.items()],
            "active": active,
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        }
        if sup.deaths_here:
            init["careful_bodies"] = s.forward_batch_events * s.forward_inflight_chunks
        if s.forwarder_quarantine_after and sup.deaths_here >= s.forwarder_quarantine_after:
            init["quarantine"] = {
                "position": [cursor.segment, cursor.offset],
                "reason": f"the forwarder died {sup.deaths_here} times while forwarding this body "
                f"(last: {sup.last_death})",
            }
        return init

    async def _run_child(self) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", _CHILD_MODULE,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        # No await between the snapshot and attaching the feed: no commit can fall in between.
        init = self._init()
        proc.stdin.write(orjson.dumps(init) + b"\n")
        self._stdin = proc.stdin
        log.info("forwarder process started", extra={"pid": proc.pid, "cursor": init["cursor"],
                                                     "careful_bodies": init.get("careful_bodies", 0)})
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
            pos = Position(m[1], m[2])
            self.spool.advance(pos, m[3])
            self.supervision.moved(pos)
            self._advanced.set()
        elif kind == "f":
            self.state.broker_up, self.state.last_error = True, None
            self._forwarded += m[1]
            self.state.set_reachable(True)
            record_forwarded_metrics(m[1], m[2], m[3])
            apply_tally(m[4])
        elif kind == "s":
            was_up = self.state.broker_up
            self.state.apply_report(m)
            if was_up and not self.state.broker_up:
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
