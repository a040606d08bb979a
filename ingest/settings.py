"""Receiver settings: every field is a ``tpipe serve`` flag and a ``TPIPE_*`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from plumbing.settings import KafkaSettings
from schemas.body import DEFAULT_LIMITS, BodyLimits


class IngestSettings(KafkaSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    token: list[SecretStr] = Field(
        default_factory=list, description="accepted webhook token (repeatable; at most 10 active)"
    )
    tokens_file: Path | None = Field(
        None, description="JSON file of token digests managed by `tpipe token`; reloaded on change and SIGHUP"
    )
    tokens_watch_interval_s: float = Field(
        1.0, description="check the tokens file for changes this often (0: only on SIGHUP)"
    )
    durability: Literal["spool", "broker"] = Field(
        "spool",
        description="spool: 202 once fsync'd to the local spool; broker: 202 only after Kafka acknowledged",
    )
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: int = Field(1 << 30, description="refuse (503) when unforwarded spool data exceeds this")
    spool_segment_bytes: int = Field(64 << 20, description="roll to a new segment file past this size")
    spool_commit_delay_ms: float = Field(
        0.0, description="extra wait before a group commit to gather more requests (0: commit as soon as idle)"
    )
    spool_gather_ms: float = Field(
        1.0, ge=0,
        description="while busy (a group commit started less than this long ago), the next one waits until this "
        "long after it, gathering the requests meanwhile: at most one fdatasync per interval under load; a "
        "request that finds the spool idle is committed at once (0: commit back to back)",
    )
    forwarder: Literal["process", "inline"] = Field(
        "process",
        description="process: parse and publish the spool in a child process (the request path only checks "
        "and spools bodies); inline: in the receiver's event loop",
    )
    forwarder_cpus: str | None = Field(
        None, description="CPU list for the forwarder process, e.g. '1' or '2-3' (default: the receiver's)"
    )
    forwarder_nice: int = Field(
        10, ge=0, le=19,
        description="CPU niceness added to the forwarder process: on a shared core the request path (and the "
        "rest of the host) preempts it; it catches up on spare CPU",
    )
    forward_batch_events: int = Field(
        1000, description="events read from the spool per Kafka round trip (each chunk is read and encoded without yielding)"
    )
    forward_inflight_chunks: int = Field(
        3, ge=1, description="chunks submitted to Kafka before the oldest is acknowledged (the next is parsed meanwhile)"
    )
    forward_gather_bytes: int = Field(
        128 << 10, ge=0,
        description="while a chunk waits for Kafka's acknowledgement, read the next one only once this many "
        "bytes are spooled (else when the acknowledgement comes): fewer, larger chunks for the same latency, "
        "since Kafka takes the next chunk after the one in flight anyway (0: read at once)",
    )
    max_body_bytes: int = Field(1 << 20, description="larger bodies get 413")
    max_body_depth: int = Field(
        DEFAULT_LIMITS.max_depth, ge=2, le=200,
        description="deepest nesting of arrays/objects accepted in a body (deeper: 400)",
    )
    max_body_events: int = Field(
        DEFAULT_LIMITS.max_events, ge=1, description="most events accepted in one JSON array body (more: 413)"
    )
    max_body_documents: int = Field(
        DEFAULT_LIMITS.max_documents, ge=1,
        description="most concatenated JSON documents accepted in one body (Splunk HEC batching; more: 413)",
    )
    validate_events: bool = Field(True, description="validate each event against its JSON Schema (invalid ones go to the DLQ)")
    drain_timeout_s: float = Field(15.0, description="on SIGTERM, time allowed to forward the spool before exit")
    broker_timeout_s: float = Field(
        5.0, description="Kafka request timeout: after it a publish counts as failed (and is retried from the spool)"
    )
    retry_after_s: int = Field(5, description="Retry-After sent with 503")
    log_requests: bool = Field(False, description="one JSON log line per request (one per spool commit always)")
    stall_after_s: float = Field(
        120.0, gt=0,
        description="not ready (and tpipe_forwarder_stalled 1) once the oldest unforwarded body has waited "
        "this long while Kafka was reachable",
    )
    forwarder_max_deaths: int = Field(
        3, ge=1, description="consecutive forwarder deaths at one spool position that mark the receiver stalled"
    )
    forwarder_quarantine_after: int = Field(
        5, ge=0,
        description="after this many consecutive forwarder deaths at one spool position, the body there goes "
        "to the DLQ as received and forwarding goes on (0: never)",
    )

    def body_limits(self) -> BodyLimits:
        """The limits the request check and the forwarder's parser both apply."""
        return BodyLimits(self.max_body_depth, self.max_body_events, self.max_body_documents)

    # ---- the HTTP edge: slow and idle clients, limits, the ops port (ingest/http/protocol.py, ingest/http/limits.py)
    header_timeout_s: float = Field(
        10.0, gt=0,
        description="close a connection whose request headers are not complete this long after it opened "
        "(on a keep-alive connection: after the next request began)",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="cut a request whose body is not complete this long after its headers (counted as 400)"
    )
    keep_alive_timeout_s: int = Field(5, ge=1, description="close a keep-alive connection idle this long between requests")
    max_concurrent_requests: int = Field(
        512, ge=1,
        description="webhook requests in flight at once (headers received, not yet answered); more get 503 with "
        "Retry-After. Idle connections do not count",
    )
    max_connections: int = Field(
        4096, ge=1,
        description="open connections on the webhook port; a connection beyond it gets 503 and is closed at once "
        "(keep it below the open-files limit, ulimit -n)",
    )
    max_header_bytes: int = Field(
        65536, ge=1024, description="request line and headers larger than this get 431 and the connection is closed"
    )
    ops_port: int | None = Field(
        None,
        description="serve /healthz, /readyz and /metrics on this port only, and /webhook only on --port "
        "(unset: everything on --port)",
    )
    ops_host: str | None = Field(None, description="address the ops port listens on (default: --host)")
    fast_webhook: bool = Field(
        True,
        description="spool mode: answer POST /webhook in the HTTP protocol itself, without an ASGI request "
        "cycle (same checks, limits and answers; about a third less CPU per request); off: through the ASGI app",
    )

    @field_validator("ops_port")
    @classmethod
    def _ops_port_differs(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A field validator, not a model validator: its error shows this field's input only, never the
        # tokens or passwords among the other inputs.
        if value is not None and value == info.data.get("port"):
            raise ValueError("ops_port must differ from port: the port a request came in on tells the two apart")
        return value
