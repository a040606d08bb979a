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
    ├── MetricsPortError                       a worker's metrics port cannot be bound (exit 2 before starting)
    └── CommandError                           a command that cannot go on (``consumers.command.run_command``
        │                                      prints it on one line; ``exit_code`` is the status, 1)
        ├── ReplayError                        a replay, reset, topics or dlq command refuses (1)
        ├── UsageError                         bad input on the command line (2)
        └── StoreMissingError                  a read command's store does not exist; none is created (2)

Any other exception escaping ``Worker.handle`` is treated as "some record in this batch is bad": the
runtime retries the batch one record at a time and dead-letters the records that still raise.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "ConsumersError",
    "DeliveryError",
    "InvalidEventError",
    "MetricsPortError",
    "NotifyConfigError",
    "NotifyError",
    "PoisonRecordError",
    "ReplayError",
    "RetryableError",
    "RulesError",
    "SecretError",
    "StoreMissingError",
    "UsageError",
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


class MetricsPortError(ConsumersError):
    """The metrics port cannot be bound (another process holds it)."""


class CommandError(ConsumersError):
    """A command that cannot go on; ``exit_code`` is its status (1 unless a subclass says)."""

    exit_code = 1


class ReplayError(CommandError):
    """A replay, reset, topics or dlq command that cannot go on; the CLI prints it and exits 1."""


class UsageError(CommandError):
    """Bad input on the command line (exit 2)."""

    exit_code = 2


class StoreMissingError(CommandError):
    """A read command's store (database, catalog, table) does not exist (exit 2)."""

    exit_code = 2
