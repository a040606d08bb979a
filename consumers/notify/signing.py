"""Standard Webhooks signatures on outgoing HTTP notifications (https://www.standardwebhooks.com/).

Every request carries:

* ``webhook-id``: the notification id, the same on every retry and redelivery (receivers dedupe on it);
* ``webhook-timestamp``: unix seconds of this attempt;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>`` where ``body``
  is the exact request body; one such signature per configured secret, separated by spaces, so a
  receiver holding either the old or the new secret accepts the request while a secret is rotated.

Secrets are written as the spec has them, ``whsec_<base64>``: the key is the base64-decoded part.
Any other string is accepted too and used as its UTF-8 bytes (the official ``standardwebhooks``
libraries base64-decode a string without the prefix, so give them such a secret as bytes:
``Webhook(secret.encode())``).

A receiver checks a request with ``verify`` (or the official libraries): one ``v1`` signature must
match, compared in constant time, and the timestamp must be within ``tolerance_s`` of its clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from consumers.errors import SecretError

__all__ = [
    "ID_HEADER",
    "KIND_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SecretError",
    "secret_key",
    "sign",
    "signed_headers",
    "verify",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
KIND_HEADER = "X-Tpipe-Notification-Kind"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300.0

Secret = str | bytes




def secret_key(secret: Secret) -> bytes:
    """The HMAC key of ``secret``: the decoded part of ``whsec_<base64>``, a string's UTF-8 bytes,
    or bytes as they are."""
    if isinstance(secret, bytes):
        key = secret
    elif secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX):]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise SecretError(f"a secret starting with {SECRET_PREFIX} must be base64 after the prefix") from None
    else:
        key = secret.encode()
    if not key:
        raise SecretError("a signing secret must not be empty")
    return key


def _mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: Secret, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """One signature: ``v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")>``."""
    return "v1," + base64.b64encode(_mac(secret_key(secret), msg_id, timestamp, body)).decode()


def signed_headers(secrets: Sequence[Secret], msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and — when there are secrets — ``webhook-signature``
    (one ``v1`` signature per secret) for ``body``."""
    ts = str(int(now if now is not None else time.time()))
    headers = {ID_HEADER: msg_id, TIMESTAMP_HEADER: ts}
    if secrets:
        headers[SIGNATURE_HEADER] = " ".join(sign(s, msg_id, ts, body) for s in secrets)
    return headers


def verify(
    secrets: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``headers`` (any case) sign ``body`` with one of ``secrets`` and the timestamp is
    within ``tolerance_s`` seconds of ``now``; False for anything missing, malformed or wrong."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp, signatures = h.get(ID_HEADER), h.get(TIMESTAMP_HEADER), h.get(SIGNATURE_HEADER)
    if not (msg_id and timestamp and signatures):
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    keys = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    expected = [_mac(secret_key(k), msg_id, timestamp, body) for k in keys]
    for versioned in signatures.split():
        version, _, value = versioned.partition(",")
        if version != "v1":
            continue
        try:
            got = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if any(hmac.compare_digest(got, e) for e in expected):
            return True
    return False
