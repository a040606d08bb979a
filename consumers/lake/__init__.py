"""The lake: the telemetry worker (Kafka -> Iceberg, exactly-once) and its read side (DuckDB).

``consumers.lake.worker.TelemetryWorker`` (``tpipe consume telemetry``), tables in
``consumers.lake.tables``, the exactly-once sink in ``consumers.lake.sink``, queries in
``consumers.lake.query`` (``tpipe lake latest|sql``). See docs/lake.md.
"""
