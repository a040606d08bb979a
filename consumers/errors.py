"""Errors raised by ``consumers`` (every one of them is defined here; the modules that raise them
import them from here)::

    ConsumersError (Exception)                 base
    ├── WorkerError                            a worker tells the runtime how to treat a failure
    │   ├── RetryableError                     transient (database down, lake commit conflict): the runtime
    │   │                                      rewinds to the batch start, backs off, tries again; never DLQ'd
    │   └── PoisonRecordError                  this record can never be processed: dead-letter it, carry on
    │       └── InvalidEventError (ValueError) an alerts/errors/credits event whose payload cannot be applied
    ├── RulesError (ValueError)                the alert rules file is malformed (the message says where)
    ├── NotifyError                            notifications
    │   ├── DeliveryError                      a sink could not deliver now; the notification stays pending
    │   ├── NotifyConfigError (ValueError)     a sink cannot be built from the configuration (no start)
    │   └── SecretError (ValueError)           a signing secret that cannot be used
    └── ReplayError                            a replay, reset, topics or dlq command that cannot go on: the
                                               CLI prints it and exits non-zero

Any other exception escaping ``Worker.handle`` is treated as "some record in this batch is bad": the
runtime retries the batch one record at a time and dead-letters the records that still raise.
"""

from __future__ import annotations

__all__ = [
    "ConsumersError",
    "DeliveryError",
    "InvalidEventError",
    "NotifyConfigError",
    "NotifyError",
    "PoisonRecordError",
    "ReplayError",
    "RetryableError",
    "RulesError",
    "SecretError",
    "WorkerError",
]


class ConsumersError(Exception):
    """Base class of the consumers' errors."""


class WorkerError(ConsumersError):
    """Base class of the errors a worker raises on purpose."""


class RetryableError(WorkerError):
    """Transient failure: nothing is committed, the batch is redelivered after a back-off."""


class PoisonRecordError(WorkerError):
    """The record cannot be processed, now or later."""


class InvalidEventError(PoisonRecordError, ValueError):
    """An alerts/errors/credits event whose payload cannot be applied (dead-letter it)."""


class RulesError(ConsumersError, ValueError):
    """The rules file is malformed (message says where)."""


class NotifyError(ConsumersError):
    """Base of the notification errors."""


class DeliveryError(NotifyError):
    """A sink could not deliver now; the notification stays pending."""


class NotifyConfigError(NotifyError, ValueError):
    """A sink cannot be built from the configuration given (the worker refuses to start)."""


class SecretError(NotifyError, ValueError):
    """A signing secret that cannot be used (empty, or ``whsec_`` followed by something not base64)."""


class ReplayError(ConsumersError):
    """A replay, reset, topics or dlq command that cannot go on; the CLI prints it and exits non-zero."""
