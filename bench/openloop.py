"""Open-loop, fixed-rate HTTP/1.1 load generator (coordinated-omission safe).

Request ``i`` is *scheduled* at ``t0 + i / rate`` whatever happened to earlier requests; its latency is
measured from that intended time, not from when a connection became free, so a stalled server shows up
as queueing delay in the percentiles instead of as fewer requests (the "coordinated omission" of
closed-loop tools such as wrk). Requests go out on a pool of keep-alive connections; when all are busy
they wait in a FIFO (and that wait counts). Requests still unanswered at the end are counted with
their latency so far (a lower bound). The scheduler ticks every ~0.5 ms, so up to ~1 ms of the
figures can be the generator's own dispatch delay.

    python -m bench.openloop --url http://127.0.0.1:8080/webhook --rate 8000 --duration 8 --warmup 2 \
        --token T body1.json body2.json ...

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import deque
from urllib.parse import urlsplit

perf = time.perf_counter


def percentile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, math.ceil(q / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k]


class Conn(asyncio.Protocol):
    def __init__(self, gen: Gen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.cur: tuple[int, float] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, item: tuple[int, float]) -> None:
        self.cur = item
        assert self.transport is not None
        self.transport.write(self.gen.reqs[item[0] % len(self.gen.reqs)])

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            status = int(head[9:12])
            cl = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                cl = int(head[i + 17 : j if j >= 0 else len(head)])
            total = end + 4 + cl
            if len(buf) < total:
                return
            del buf[:total]
            self.gen.done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class Gen:
    def __init__(self, host: str, port: int, reqs: list[bytes], rate: float, warmup: float, duration: float,
                 conns: int) -> None:
        self.host, self.port = host, port
        self.reqs = reqs
        self.rate = rate
        self.warmup = warmup
        self.duration = duration
        self.nconns = conns
        self.idle: deque[Conn] = deque()
        self.queue: deque[tuple[int, float]] = deque()
        self.lat: list[float] = []
        self.gen_lag: list[float] = []
        self.status: dict[int, int] = {}
        self.errors = 0
        self.completed = 0
        self.t0 = 0.0
        self.measure_from = 0.0
        self.measure_to = 0.0
        self.outstanding = 0
        self.max_queue = 0
        self.closing = False

    def done(self, conn: Conn, status: int) -> None:
        now = perf()
        assert conn.cur is not None
        _, intended = conn.cur
        conn.cur = None
        self.outstanding -= 1
        self.completed += 1
        if self.measure_from <= intended < self.measure_to:
            self.lat.append(now - intended)
            self.status[status] = self.status.get(status, 0) + 1
        if self.queue:
            conn.send(self.queue.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: Conn) -> None:
        if self.closing:
            return
        if conn.cur is not None:
            self.errors += 1
            self.outstanding -= 1
            conn.cur = None
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            try:
                _, proto = await loop.create_connection(lambda: Conn(self), self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            if self.queue:
                proto.send(self.queue.popleft())
            else:
                self.idle.append(proto)
            return

    def dispatch(self, item: tuple[int, float]) -> None:
        self.outstanding += 1
        if self.idle:
            if self.measure_from <= item[1] < self.measure_to:
                self.gen_lag.append(perf() - item[1])  # the generator's own delay, not the server's
            self.idle.pop().send(item)
        else:
            self.queue.append(item)
            if len(self.queue) > self.max_queue:
                self.max_queue = len(self.queue)

    async def run(self) -> dict[str, object]:
        for _ in range(self.nconns):
            await self._connect()
        total = int(self.rate * (self.warmup + self.duration))
        self.t0 = t0 = perf() + 0.01
        self.measure_from = t0 + self.warmup
        self.measure_to = t0 + self.warmup + self.duration
        i = 0
        rate = self.rate
        while i < total:
            due = min(total, int((perf() - t0) * rate) + 1)
            while i < due:
                self.dispatch((i, t0 + i / rate))
                i += 1
            await asyncio.sleep(0.0005)
        grace_end = perf() + 10.0
        while self.outstanding > 0 and perf() < grace_end:
            await asyncio.sleep(0.01)
        end = perf()
        # unanswered requests count with their latency so far (a lower bound)
        unanswered = [end - it for _, it in self.queue if self.measure_from <= it < self.measure_to]
        self.closing = True
        lat = sorted(self.lat + unanswered)
        ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
        return {
            "rate": rate,
            "duration_s": self.duration,
            "scheduled": sum(1 for k in range(total) if self.measure_from <= t0 + k / rate < self.measure_to),
            "completed_in_window": len(self.lat),
            "unanswered": len(unanswered),
            "errors": self.errors,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "p50_ms": ms(percentile(lat, 50)),
            "p90_ms": ms(percentile(lat, 90)),
            "p99_ms": ms(percentile(lat, 99)),
            "p999_ms": ms(percentile(lat, 99.9)),
            "max_ms": ms(lat[-1] if lat else None),
            "max_queue": self.max_queue,
            # how late the generator itself sent requests that found an idle connection: if this is
            # not well below the latencies, the generator (or its CPU) is the bottleneck
            "gen_lag_p99_ms": ms(percentile(sorted(self.gen_lag), 99)),
        }


def build_requests(url: str, token: str, bodies: list[bytes]) -> tuple[str, int, list[bytes]]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = u.path or "/"
    out = []
    for b in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        out.append(head + b)
    return host, port, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second (fixed schedule)")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds at the same rate before measuring")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--token", default="")
    ap.add_argument("bodies", nargs="+")
    a = ap.parse_args(argv)
    bodies = [open(p, "rb").read() for p in a.bodies]
    host, port, reqs = build_requests(a.url, a.token, bodies)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    res = asyncio.run(Gen(host, port, reqs, a.rate, a.warmup, a.duration, a.conns).run())
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
