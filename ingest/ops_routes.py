"""The receiver's ops routes: ``/healthz`` (liveness, with the spool, forwarder and broker status),
``/readyz`` (can accept webhooks) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from ingest.forward.health import stall
from ingest.sanitize import strip_addresses
from plumbing import metrics

if TYPE_CHECKING:
    from ingest.app import Receiver

_JSON = "application/json"


class OpsRoutes:
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def status(self) -> dict[str, Any]:
        r = self.receiver
        s = r.settings
        out: dict[str, Any] = {"durability": s.durability, "accepting": r.accepting}
        if r.spool is not None:
            st = r.spool.stats()
            out["spool"] = {
                "pending_events": st.pending_events,
                "pending_bytes": st.pending_bytes,
                "max_bytes": st.max_bytes,
                "oldest_age_s": None if st.oldest_age_s is None else round(st.oldest_age_s, 3),
                "segments": st.segments,
                "writable": st.writable,
                "last_write_error": st.last_write_error,
                "damaged_bytes_recovered": st.damaged_bytes_recovered,
            }
        fw = r.forwarder
        if fw is not None and r.spool is not None:
            cursor = r.spool.cursor
            fw.supervision.moved(cursor)
            stuck = stall(fw.state, fw.supervision, cursor=cursor, oldest_age_s=st.oldest_age_s,
                          stall_after_s=s.stall_after_s, max_deaths=s.forwarder_max_deaths)
            metrics.FORWARDER_STALLED.set(1 if stuck else 0)
            out["forwarder"] = {
                "mode": fw.mode, "pid": fw.pid, "restarts": fw.supervision.restarts,
                "deaths_at_this_position": fw.supervision.deaths_here,
                "stalled": stuck is not None,
                "stall": {**stuck.as_dict(), "reason": strip_addresses(stuck.reason)} if stuck else None,
            }
            state = fw.state
            out["broker"] = {
                "up": state.broker_reachable(s.broker_timeout_s),
                "reachable": state.kafka_reachable,
                "last_error": strip_addresses(state.last_error),
                "publish_pending_s": state.publish_pending_s(),
            }
        else:
            out["broker"] = {"up": r.direct is not None and r.direct.up, "reachable": None,
                             "last_error": None, "publish_pending_s": None}
        return out

    async def healthz(self, request: Request) -> Response:
        return Response(orjson.dumps({"status": "ok", **self.status()}), media_type=_JSON)

    async def readyz(self, request: Request) -> Response:
        st = self.status()
        r = self.receiver
        if r.settings.durability == "spool":
            ready = r.accepting and st["spool"]["writable"] and not st["forwarder"]["stalled"]
        else:
            ready = r.accepting and st["broker"]["up"]
        return Response(
            orjson.dumps({"status": "ready" if ready else "not_ready", **st}),
            status_code=200 if ready else 503,
            media_type=_JSON,
        )

    async def metrics(self, request: Request) -> Response:
        r = self.receiver
        if r.forwarder is not None:
            self.status()  # refreshes tpipe_forwarder_stalled
        if r.spool is not None:
            st = r.spool.stats()
            metrics.SPOOL_EVENTS.set(st.pending_events)
            metrics.SPOOL_BYTES.set(st.pending_bytes)
            metrics.SPOOL_OLDEST_AGE.set(st.oldest_age_s or 0.0)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
