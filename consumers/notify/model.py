"""The notification value object and its stable id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Notification", "notification_id"]


def notification_id(kind: str, *parts: object) -> str:
    """A stable 32-hex id from what identifies the notification (same cause, same id)."""
    h = hashlib.sha256(kind.encode())
    for p in parts:
        h.update(b"\x1f")
        h.update(str(p).encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Notification:
    """One thing to tell people about.

    ``kind`` is ``alert`` or ``low_balance``; ``subject`` is a one-line human summary; ``details``
    carries the structured data (alert fields, balances); ``sinks`` restricts delivery to some sink
    names (None: every configured sink).
    """

    notification_id: str
    kind: str
    subject: str
    vin: str | None
    created_at_ms: int
    details: dict[str, Any] = field(default_factory=dict)
    sinks: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        from schemas.times import format_ms

        return {
            "notification_id": self.notification_id,
            "kind": self.kind,
            "subject": self.subject,
            "vin": self.vin,
            "created_at": format_ms(self.created_at_ms, ""),
            "created_at_ms": self.created_at_ms,
            "details": self.details,
        }

    def to_json(self) -> bytes:
        """The body every sink sends (compact JSON, keys in a fixed order)."""
        return orjson.dumps(self.to_dict())
