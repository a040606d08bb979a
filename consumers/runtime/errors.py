"""Errors a worker raises to tell the runtime how to treat a failure.

    WorkerError                 base class
    ├── RetryableError          transient (database down, lake commit conflict that needs a reload):
    │                           the runtime rewinds to the batch start, backs off and tries again; never DLQ'd
    └── PoisonRecordError       this record can never be processed: dead-letter it and carry on

Any other exception escaping ``Worker.handle`` is treated as "some record in this batch is bad": the
runtime retries the batch one record at a time and dead-letters the records that still raise.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of the errors a worker raises on purpose."""


class RetryableError(WorkerError):
    """Transient failure: nothing is committed, the batch is redelivered after a back-off."""


class PoisonRecordError(WorkerError):
    """The record cannot be processed, now or later."""
