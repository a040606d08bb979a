"""Options every worker takes, on top of the Kafka connection (each is also a ``TPIPE_*`` variable)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from plumbing.settings import KafkaSettings


class WorkerSettings(KafkaSettings):
    """Consumer-loop options shared by all workers; workers subclass it for their own options.

    The metrics server (``--metrics-port``; ``--no-metrics`` turns it off) is started by
    ``consumers.runtime.run_worker`` before the worker joins its group; port 0 takes a free port,
    which is printed and logged. Each worker's subclass sets its default port (telemetry 9101,
    alerts 9102, credits 9103): a second copy of a worker on the same host needs ``--metrics-port 0``
    (or a port of its own), and gets a one-line error otherwise.
    """

    cli_group: ClassVar[str] = "consumer loop"

    group_id: str | None = Field(None, description="consumer group",
                                 json_schema_extra={"metavar": "GROUP", "default_text": "<topic prefix>.<worker>"})
    batch_size: int = Field(500, ge=1, description="most records handed to the worker per batch")
    batch_timeout_ms: int = Field(1000, ge=1, description="longest wait for a batch to fill")
    metrics: bool = Field(True, description="serve Prometheus /metrics on --metrics-port")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port (0: a free port, printed at start)")
    metrics_addr: str = Field("0.0.0.0", description="address the metrics server binds")
    drain_timeout_s: float = Field(30.0, gt=0, description="on SIGTERM, longest wait to finish and flush")
    retry_backoff_ms: int = Field(1000, ge=1, description="first back-off after a retryable failure (doubles, max 30 s)")

    def group_for(self, worker_name: str) -> str:
        return self.group_id or f"{self.topic_prefix}.{worker_name}"
