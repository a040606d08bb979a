"""Notifications shared by the alerts and credits workers.

A notification is written to an *outbox* table in the same database transaction as the effect
that caused it (an alert occurrence seen for the first time, a low-balance crossing), keyed by a
stable ``notification_id`` so replays and redeliveries never create a second one. A dispatcher then
delivers pending rows to the configured sinks (HTTP POST signed with HMAC-SHA256, a Kafka topic,
the log) and records each delivery; a crash between delivery and that record means the sink sees
the notification again (at-least-once), with the same id for receivers to dedupe.

Modules: ``model`` (Notification), ``outbox`` (tables, enqueue, pending, mark), ``sinks`` (the three
sinks), ``signing`` (signature helpers for senders and receivers), ``dispatcher`` (delivery loop),
``settings`` (NotifySettings: the flags both workers share).
"""

from consumers.notify.model import Notification, notification_id

__all__ = ["Notification", "notification_id"]
