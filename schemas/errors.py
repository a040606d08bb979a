"""Errors raised by ``schemas``.

::

    SchemaError (ValueError)     base; ``.reason`` is a short human-readable cause
    ├── BodyError                a webhook body that cannot become events (bad JSON, wrong shape, too deep)
    │   └── BodyTooLargeError    more events or concatenated documents than the limits allow (413)
    └── EnvelopeError            bytes that are not a valid envelope (Kafka value, replay input)
"""

from __future__ import annotations

__all__ = ["BodyError", "BodyTooLargeError", "EnvelopeError", "SchemaError"]


class SchemaError(ValueError):
    """Base class; ``reason`` is the message without the class name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyError(SchemaError):
    """The request body is not JSON, or not an event object / a non-empty array of them."""


class BodyTooLargeError(BodyError):
    """The body holds more events (or concatenated documents) than ``schemas.body.BodyLimits`` allow."""


class EnvelopeError(SchemaError):
    """The bytes are not an envelope this code understands (garbage, missing key, newer version)."""
