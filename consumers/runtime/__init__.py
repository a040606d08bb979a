"""Worker runtime: one consumer group per worker, commits only what the worker made durable.

Write a worker::

    from consumers.runtime import Failure, Worker, WorkerRecord, WorkerSettings, run_worker

    class AlertsWorker(Worker):
        name = "alerts"                       # group "<prefix>.alerts", metric label "alerts"
        event_types = ("alerts",)             # topics via schemas.topics.topic_for(t, prefix)

        async def start(self) -> None: ...    # open the DB
        async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
            # apply every record idempotently by record.envelope.event_id, durably, then return
            # the records that can never be processed (they go to <prefix>.dlq):
            return [Failure(rec, "why") for rec in bad]
        async def stop(self) -> None: ...

    sys.exit(run_worker(AlertsWorker(...), WorkerSettings()))       # CLI: signals, metrics server

In-process (tests)::

    stop = asyncio.Event()
    rt = WorkerRuntime(worker, settings, stop=stop)       # or: await run(worker, settings, stop=stop)
    task = asyncio.create_task(rt.run())
    await asyncio.wait_for(rt.assigned_event.wait(), 30)  # joined the group, has its partitions
    ...; stop.set(); await task                           # drains: forced checkpoint + commit

Contract (what the runtime guarantees and what it expects):

* Consumer from ``plumbing.kafka_clients.make_consumer`` (auto-commit off, ``read_committed``,
  ``auto_offset_reset=earliest``), group ``settings.group_id or "<prefix>.<worker.name>"``;
  the topics and ``<prefix>.dlq`` are created if missing.
* Loop: ``getmany(timeout_ms=batch_timeout_ms, max_records=batch_size)`` -> decode each value
  with ``Envelope.from_json`` (undecodable -> DLQ, ``dlq_error_type=DecodeError``, never reaches
  the worker) -> ``worker.handle(batch)`` -> dead-letter the returned ``Failure``s (waits for the
  broker's ack) -> ``worker.checkpoint(offsets, force=False)`` -> commit the returned offsets.
  ``checkpoint`` runs after every poll, also an empty one (time-based flushes).
* ``handle`` errors: ``RetryableError`` -> back off (``retry_backoff_ms``, doubling to 30 s) and
  retry the same batch, nothing advances (a revocation or stop during the back-off abandons the
  batch: it is read again); any other exception -> the batch is retried one record
  at a time and records that still raise are dead-lettered (``PoisonRecordError`` is the explicit
  way). So effects must be idempotent by ``event_id`` — they are also needed for redelivery after a
  crash and for duplicate webhooks (same event_id at another offset).
* Offsets: Kafka gets exactly what ``checkpoint`` returns (default: everything handled, because
  ``handle`` made it durable). A buffering worker returns offsets only once its buffer is durable.
  A failed Kafka commit is logged and retried with the next checkpoint (redelivery is harmless).
* Rebalance: handling and revocation share a lock. On revocation: wait for the batch in flight,
  ``checkpoint(force=True)``, commit, ``worker.on_revoked(partitions)``. On assignment:
  ``worker.positions(assigned)``; the runtime seeks to each returned offset (the worker's own
  store wins over the group's committed offsets).
* SIGTERM/SIGINT (``run_worker``): stop polling, finish the batch in flight, ``checkpoint(force=True)``,
  commit, ``worker.stop()``, leave the group; bounded by ``drain_timeout_s``. A second signal
  exits at once (status 130).
* Metrics (``plumbing.metrics``, label ``worker``): ``WORKER_PROCESSED`` (handled minus failures),
  ``WORKER_FAILED`` and ``WORKER_DLQ`` (dead-lettered), ``WORKER_COMMIT_SECONDS`` (checkpoint +
  Kafka commit), ``WORKER_LAG`` per topic/partition (highwater - handled position).
  ``WORKER_DUPLICATES`` is the worker's to count. ``run_worker`` (``consumers.runtime.process``)
  serves ``REGISTRY`` on ``metrics_port`` before anything starts (0: a free port, printed and logged;
  a taken port: a one-line error, exit 2; ``--no-metrics``: none). Each worker's settings subclass
  sets its default port.
* DLQ record: original key, value, timestamp and headers plus ``dlq_error``, ``dlq_error_type``,
  ``dlq_worker``, ``dlq_source_topic``, ``dlq_source_partition``, ``dlq_source_offset``,
  ``dlq_at_ms`` (see ``consumers.runtime.dlq``).
"""

from consumers.errors import PoisonRecordError, RetryableError, WorkerError
from consumers.runtime.dlq import DLQ_HEADERS, DeadLetter, header_map
from consumers.runtime.process import MetricsPortError, run_worker, start_metrics_server
from consumers.runtime.runner import WorkerRuntime, run, worker_topics
from consumers.runtime.settings import WorkerSettings
from consumers.runtime.worker import Failure, Offsets, Worker, WorkerRecord

__all__ = [
    "DLQ_HEADERS",
    "DeadLetter",
    "Failure",
    "MetricsPortError",
    "Offsets",
    "PoisonRecordError",
    "RetryableError",
    "Worker",
    "WorkerError",
    "WorkerRecord",
    "WorkerRuntime",
    "WorkerSettings",
    "header_map",
    "run",
    "run_worker",
    "start_metrics_server",
    "worker_topics",
]
