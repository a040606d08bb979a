"""History tooling: ``tpipe replay`` (Kafka), ``tpipe lake replay`` (Iceberg), ``tpipe consumers reset``
and ``tpipe topics``. See docs/replay.md."""
