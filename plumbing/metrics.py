"""Every Prometheus metric tpipe exposes, named in one place.

The receiver serves them at ``/metrics`` on its HTTP port; each worker serves its own on
``--metrics-port``. Label values are bounded (event types, statuses, worker names, partitions).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# --- receiver ---------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "tpipe_http_requests_total", "Webhook requests by HTTP status", ["status"], registry=REGISTRY
)
HTTP_LIMITED = Counter(
    "tpipe_http_limited_total",
    "Connections closed or requests refused by a receiver limit, by the setting that applied "
    "(header_timeout_s, body_timeout_s, max_header_bytes, max_connections, max_concurrent_requests)",
    ["limit"],
    registry=REGISTRY,
)
EVENTS_ACCEPTED = Counter(
    "tpipe_events_accepted_total", "Events acknowledged to the sender, by type", ["type"], registry=REGISTRY
)
EVENTS_INVALID = Counter(
    "tpipe_events_invalid_total",
    "Events accepted but not valid against their schema (sent to the DLQ), by type",
    ["type"],
    registry=REGISTRY,
)
SPOOL_EVENTS = Gauge("tpipe_spool_depth_events", "Spooled webhook bodies not yet forwarded to Kafka (one per request)", registry=REGISTRY)
SPOOL_BYTES = Gauge("tpipe_spool_bytes", "Bytes of spool segments on disk", registry=REGISTRY)
SPOOL_OLDEST_AGE = Gauge(
    "tpipe_spool_oldest_age_seconds", "Age of the oldest event not yet confirmed by Kafka", registry=REGISTRY
)
SPOOL_FSYNC_SECONDS = Histogram(
    "tpipe_spool_commit_seconds",
    "Time of one spool group commit (write + fsync)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
    registry=REGISTRY,
)
SPOOL_REJECTED = Counter(
    "tpipe_spool_rejected_total", "Requests refused with 503 because the spool was full or failing",
    ["reason"], registry=REGISTRY,
)
SPOOL_CORRUPT_BYTES = Counter(
    "tpipe_spool_corrupt_bytes_total", "Bytes moved aside by spool recovery", registry=REGISTRY
)
FORWARDED = Counter("tpipe_forwarded_events_total", "Events confirmed by Kafka", registry=REGISTRY)
FORWARD_LATENCY = Histogram(
    "tpipe_forward_latency_seconds",
    "From acknowledgement to the sender until Kafka confirmed the event",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300),
    registry=REGISTRY,
)
FORWARD_ERRORS = Counter("tpipe_forward_errors_total", "Failed Kafka publish attempts", registry=REGISTRY)
BROKER_UP = Gauge("tpipe_broker_up", "1 when the last Kafka request succeeded", registry=REGISTRY)
FORWARD_DEAD_LETTERS = Counter(
    "tpipe_forward_dead_letters_total",
    "Records the receiver sent to the DLQ instead of their topic, by reason (schema_invalid, body_unparsed, "
    "event_unbuildable, kafka_refused, forwarder_crash)",
    ["reason"], registry=REGISTRY,
)
FORWARD_TIMESTAMP_REPLACED = Counter(
    "tpipe_forward_timestamp_replaced_total",
    "Records stamped with their receive time because their topic refuses the event's own time",
    registry=REGISTRY,
)
FORWARDER_RESTARTS = Counter(
    "tpipe_forwarder_restarts_total", "Times the forwarder (process or task) ended unexpectedly and was restarted",
    registry=REGISTRY,
)
FORWARDER_STALLED = Gauge(
    "tpipe_forwarder_stalled",
    "1 while forwarding is stuck: the oldest unforwarded body waited longer than --stall-after-s while Kafka "
    "was reachable, or the forwarder died repeatedly at one spool position",
    registry=REGISTRY,
)
KAFKA_REACHABLE = Gauge(
    "tpipe_kafka_reachable", "1 when the forwarder's last Kafka request or metadata probe got an answer",
    registry=REGISTRY,
)
BODIES_REFUSED = Counter(
    "tpipe_bodies_refused_total",
    "Webhook bodies refused on the request path, by reason (invalid, too_deep, too_many_events, too_large, "
    "unauthorized, internal_error)",
    ["reason"], registry=REGISTRY,
)

# --- workers ----------------------------------------------------------------------------------
WORKER_PROCESSED = Counter(
    "tpipe_worker_records_processed_total", "Records whose effects are durable", ["worker"], registry=REGISTRY
)
WORKER_FAILED = Counter(
    "tpipe_worker_records_failed_total", "Records a worker could not process", ["worker"], registry=REGISTRY
)
WORKER_DLQ = Counter(
    "tpipe_worker_dlq_total", "Records a worker sent to the dead-letter topic", ["worker"], registry=REGISTRY
)
WORKER_DUPLICATES = Counter(
    "tpipe_worker_duplicates_total", "Records skipped because their event_id was already applied",
    ["worker"], registry=REGISTRY,
)
WORKER_LAG = Gauge(
    "tpipe_worker_lag_records", "Records behind the end of the partition", ["worker", "topic", "partition"],
    registry=REGISTRY,
)
LAKE_EVENTS_COMMITTED = Counter(
    "tpipe_lake_events_committed_total",
    "Events whose rows a lake table committed (with their Kafka offsets, in one Iceberg snapshot)",
    ["table"],
    registry=REGISTRY,
)
LAKE_DEDUP_INDEX_IDS = Gauge(
    "tpipe_lake_dedup_index_ids",
    "event_ids a lake table's dedup index holds in memory (16 bytes each; at most --dedup-max-ids)",
    ["table"],
    registry=REGISTRY,
)
LAKE_DEDUP_TABLE_CHECKS = Counter(
    "tpipe_lake_dedup_table_checks_total",
    "Records whose dedup check read the table because their hour of created_at holds more event_ids "
    "than --dedup-max-ids (exact, but a scan per batch: raise the bound if this grows)",
    ["table"],
    registry=REGISTRY,
)
WORKER_COMMIT_SECONDS = Histogram(
    "tpipe_worker_commit_seconds",
    "Time to make one batch's effects durable and commit its offsets",
    ["worker"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

LAKE_VALUES_MISTYPED = Counter(
    "tpipe_lake_values_mistyped_total",
    "Telemetry values of a catalogued field that do not have the field's type (a number field sent as an "
    "object or a word ...): kept in the lake (value_json/value_string), listed by the view mistyped_values",
    ["field"], registry=REGISTRY,
)

# --- alerts and credits -----------------------------------------------------------------------
NOTIFICATIONS = Counter(
    "tpipe_notifications_total",
    "Notification deliveries by sink and outcome (delivered, dead_lettered, failed)",
    ["sink", "outcome"],
    registry=REGISTRY,
)
NOTIFY_OUTBOX_PENDING = Gauge(
    "tpipe_notify_outbox_pending", "Notifications written but not yet delivered to every sink", ["worker"],
    registry=REGISTRY,
)
CREDITS_BALANCE = Gauge("tpipe_credits_balance", "Current Teslemetry credit balance (newest by created_at)",
                        registry=REGISTRY)
