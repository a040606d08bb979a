"""``tpipe console``: the operator's web console over the running pipeline.

Pages (``tpipe.console.pages``): Overview (verdict, receivers, events per minute, worker lag, DLQ),
Events (search Kafka and the lake, an event's journey), Vehicle (latest values, charts, route, active
alerts), Alerts, Credits, Tokens. It reads the real parts — receivers' ``/readyz`` and ``/metrics``,
Kafka through ``plumbing.kafka_clients``, the lake through ``consumers.lake.query``, the alerts and
credits stores, the tokens file through ``ingest.tokens`` — and lives in the composition root because
it reads both roles. Access rules: ``tpipe.console.access``.
"""
