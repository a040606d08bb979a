"""The forwarder process (started by ``ingest.forward.process.ForwarderProcess``; not run by hand).

Reads the init line and commit notices on stdin, forwards the spool with the same ``Forwarder`` as
the inline mode, and reports on stdout (protocol: ``ingest.forward.process``). Ignores SIGINT and
SIGTERM: the receiver decides when it stops (EOF), after draining the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ingest.forward.forwarder import Forwarder, producer_factory
from ingest.records import RecordBuilder, TypeCounts
from ingest.settings import IngestSettings
from ingest.spool.files import Position
from ingest.spool.frame import SpooledBody
from ingest.spool.reader import SegmentFiles, read_frames, unread_bytes
from plumbing.logs import configure_logging, register_secret

log = logging.getLogger("tpipe.forwarder")

STATUS_EVERY_S = 0.5
EXIT_AFTER_EOF_S = 10.0  # a publish stuck on a dead broker must not keep an orphan alive
EXIT_CRASHED = 70  # forwarding ended by itself (EX_SOFTWARE): the receiver restarts us


class Reports:
    """Lines to the receiver, written to stdout without blocking the loop."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._t = transport

    def send(self, msg: list[Any]) -> None:
        if not self._t.is_closing():
            self._t.write(orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS) + b"\n")


class SpoolView:
    """The child's view of the receiver's spool: segments it may read up to their committed size."""

    def __init__(self, root: Path, cursor: Position, sizes: dict[int, int], active: int, reports: Reports) -> None:
        self.root = root
        self._cursor = cursor
        self._sizes = sizes
        self._active = active
        self._reports = reports
        self._files = SegmentFiles(root)
        self.committed = asyncio.Event()

    @property
    def cursor(self) -> Position:
        return self._cursor

    def on_commit(self, segment: int, size: int) -> None:
        if segment >= self._active:
            self._active = segment
        if size >= self._sizes.get(segment, 0):
            self._sizes[segment] = size
        self.committed.set()

    def read(self, start: Position, *, max_records: int) -> tuple[list[SpooledBody], Position]:
        return read_frames(self.root, self._sizes, self._active, start, max_records=max_records, files=self._files)

    def unread_bytes(self, pos: Position) -> int:
        return unread_bytes(self._sizes, pos)

    def advance(self, new_cursor: Position, events: int) -> None:
        self._cursor = new_cursor
        for seg in [s for s in self._sizes if s < new_cursor.segment]:
            del self._sizes[seg]  # the receiver deletes the file; we will not read it again
        self._files.release_before(new_cursor.segment)
        self._reports.send(["a", new_cursor.segment, new_cursor.offset, events])

    def has_unforwarded(self) -> bool:
        return self._cursor < Position(self._active, self._sizes.get(self._active, 0))


class ChildForwarder(Forwarder):
    reports: Reports

    def report_forwarded(self, events: int, counts: TypeCounts, latency_s: float, tally: dict[str, int]) -> None:
        self.reports.send(["f", events, counts, latency_s, tally])

    def report_down(self) -> None:
        self.send_status()

    def report_status(self) -> None:
        self.send_status()

    def send_status(self) -> None:
        self.reports.send(self.state.report())


async def _status_loop(fw: ChildForwarder) -> None:
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        fw.send_status()


async def _feed(reader: asyncio.StreamReader, view: SpoolView) -> None:
    """Commit notices from the receiver until EOF (the receiver wants us to stop)."""
    while True:
        line = await reader.readline()
        if not line:
            return
        seg, size = orjson.loads(line)
        view.on_commit(seg, size)


async def _forward(fw: ChildForwarder, init: dict[str, Any]) -> None:
    quarantine = init.get("quarantine")
    if quarantine:
        await fw.quarantine(Position(*quarantine["position"]), quarantine["reason"])
    await fw.run()


async def _main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(1, "wb", buffering=0))
    reports = Reports(transport)
    first = await reader.readline()
    if not first:
        return 2
    init = orjson.loads(first)
    configure_logging(init.get("log_level", "INFO"))
    settings = IngestSettings.model_validate(init["settings"])
    if settings.kafka_sasl_password is not None:
        register_secret(settings.kafka_sasl_password.get_secret_value())
    if settings.forwarder_cpus:
        from ingest.forward.process import parse_cpus

        os.sched_setaffinity(0, parse_cpus(settings.forwarder_cpus))
    if settings.forwarder_nice:
        os.nice(settings.forwarder_nice)
    validator = None
    if settings.validate_events:
        from schemas.validate import compile_all, validate_event

        compile_all()
        validator = validate_event
    view = SpoolView(
        settings.spool_dir,
        Position(*init["cursor"]),
        {int(s): int(n) for s, n in init["sizes"]},
        int(init["active"]),
        reports,
    )
    builder = RecordBuilder(settings.topic_prefix, validator, settings.body_limits())
    fw = ChildForwarder(
        view, producer_factory(settings, builder), builder,
        batch_events=settings.forward_batch_events, max_inflight=settings.forward_inflight_chunks,
        gather_bytes=settings.forward_gather_bytes,
    )
    fw.reports = reports
    fw.careful_bodies = int(init.get("careful_bodies", 0))
    gc.collect()
    gc.freeze()
    run = loop.create_task(_forward(fw, init), name="forwarder")
    feed = loop.create_task(_feed(reader, view), name="feed")
    status = loop.create_task(_status_loop(fw), name="status")
    log.info("forwarder process running", extra={"pid": os.getpid(), "cursor": init["cursor"],
                                                 "careful_bodies": fw.careful_bodies})
    rc = 0
    try:
        await asyncio.wait({run, feed}, return_when=asyncio.FIRST_COMPLETED)
        if run.done() and not feed.done():  # forwarding ended although nobody asked it to: say why, exit non-zero
            exc = run.exception()
            log.error("forwarding stopped unexpectedly; exiting so the receiver restarts the forwarder",
                      exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)
            fw.state.last_error = f"forwarder crashed: {type(exc).__name__}: {exc}" if exc else "forwarder ended"
            rc = EXIT_CRASHED
    finally:
        fw.stop()
        feed.cancel()
        eof_at = time.monotonic()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(run), timeout=EXIT_AFTER_EOF_S)
        status.cancel()
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(fw.close(), timeout=max(1.0, EXIT_AFTER_EOF_S - (time.monotonic() - eof_at)))
        fw.send_status()
    return rc


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import uvloop

    return uvloop.run(_main())


if __name__ == "__main__":
    sys.exit(main())
