"""What a webhook body must be to be accepted: JSON (or concatenated JSON objects, Splunk HEC
batching) whose top level is an object or a non-empty array of objects.

``check_body`` is the receiver's request-path check (one ``orjson.loads``); ``parse_body`` applies
the same rule before normalising, so a body the receiver accepted always parses.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.errors import BodyError


def decode_body(body: bytes | bytearray | memoryview | str) -> dict[str, Any] | list[dict[str, Any]]:
    """The decoded document; raises ``BodyError`` (with ``.reason``) for anything not acceptable."""
    from schemas.parse import _jtype, _split_concatenated

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        doc = _split_concatenated(body)
        if doc is None:
            raise BodyError(f"invalid JSON: {exc}") from None
    if type(doc) is dict:
        return doc
    if type(doc) is not list:
        raise BodyError(f"top level must be an object or an array of objects, got {_jtype(doc)}")
    if not doc:
        raise BodyError("empty array: no events")
    for i, item in enumerate(doc):
        if type(item) is not dict:
            raise BodyError(f"array item {i} must be an object, got {_jtype(item)}")
    return doc


def check_body(body: bytes | bytearray | memoryview | str) -> None:
    """Raise ``BodyError`` unless ``body`` is an acceptable webhook body (see module doc)."""
    decode_body(body)
