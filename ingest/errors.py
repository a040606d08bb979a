"""Errors raised by ``ingest``::

    IngestError (Exception)                 base
    ├── TokenError (also ValueError)        a webhook token or the tokens file cannot be used
    ├── ListenError                         a port could not be bound (taken, or not ours to bind)
    ├── SpoolError                          the spool cannot take or give a body
    │   ├── SpoolFullError                  accepting it would pass --spool-max-bytes (the request gets 503)
    │   ├── SpoolWriteError                 the write or fsync failed (disk full, I/O error; 503)
    │   ├── CorruptFrameError               the bytes at an offset are not a valid frame (recovery skips them)
    │   └── IncompleteFrameError            not enough bytes yet for a whole frame at an offset
    └── ForwardingError                     inside the forwarder
        ├── NotSubmittedError               a record never handed to the producer (an earlier one failed first)
        └── StoppedError                    a delivery gave up because the forwarder is stopping
"""

from __future__ import annotations

__all__ = [
    "CorruptFrameError",
    "ForwardingError",
    "IncompleteFrameError",
    "IngestError",
    "ListenError",
    "NotSubmittedError",
    "SpoolError",
    "SpoolFullError",
    "SpoolWriteError",
    "StoppedError",
    "TokenError",
]


class IngestError(Exception):
    """Base class of the receiver's errors."""


class TokenError(IngestError, ValueError):
    """A webhook token or the tokens file cannot be used (unreadable, too many active, unknown id)."""


class ListenError(IngestError):
    """A port could not be bound (taken, or not ours to bind)."""


class SpoolError(IngestError):
    """The spool cannot take or give a body."""


class SpoolFullError(SpoolError):
    """Accepting these bytes would pass the configured maximum of unforwarded data."""


class SpoolWriteError(SpoolError):
    """The write or fsync failed (disk full, I/O error): nothing of this batch is acknowledged."""


class CorruptFrameError(SpoolError):
    """The bytes at this offset are not a valid frame."""


class IncompleteFrameError(SpoolError):
    """Not enough bytes yet for a whole frame at this offset."""


class ForwardingError(IngestError):
    """Raised inside the forwarder."""


class NotSubmittedError(ForwardingError):
    """The record was never handed to the producer (an earlier record of its chunk failed first)."""


class StoppedError(ForwardingError):
    """A delivery gave up because its stop event was set (records stay where they were)."""
