"""Process plumbing every role shares: configuration (``settings``), the one place that builds
Kafka clients (``kafka_clients``), structured logs with secrets redacted (``logs``), every Prometheus
metric (``metrics``), the settings-to-flags bridge (``cli_settings``) and the one retry helper
(``retry``). It imports only ``schemas``; ``ingest`` and ``consumers`` import it, never each other.
"""
