"""HMAC-SHA256 signatures on outgoing HTTP notifications.

Headers: ``X-Tpipe-Timestamp: <unix seconds>`` and
``X-Tpipe-Signature: sha256=<hex HMAC(secret, f"{timestamp}.{body}")>`` where ``body`` is the exact
request body. A receiver recomputes the HMAC, compares in constant time, and rejects timestamps
too far from its clock (replay protection). ``X-Tpipe-Notification-Id`` is stable across retries
and redeliveries: receivers dedupe on it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "ID_HEADER",
    "KIND_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signed_headers",
    "verify",
]

TIMESTAMP_HEADER = "X-Tpipe-Timestamp"
SIGNATURE_HEADER = "X-Tpipe-Signature"
ID_HEADER = "X-Tpipe-Notification-Id"
KIND_HEADER = "X-Tpipe-Notification-Kind"


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex>`` over ``f"{timestamp}.".encode() + body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str | bytes | None, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """Timestamp and (when a secret is configured) signature headers for ``body``."""
    ts = str(int(now if now is not None else time.time()))
    headers = {TIMESTAMP_HEADER: ts}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, ts, body)
    return headers


def verify(
    secret: str | bytes, timestamp: str, signature: str, body: bytes, *, tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True when ``signature`` is valid for ``body`` and ``timestamp`` is within ``tolerance_s``."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
