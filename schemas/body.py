"""What a webhook body must be to be accepted: JSON (or concatenated JSON objects, Splunk HEC
batching) whose top level is an object or a non-empty array of objects.

``check_body`` is the receiver's request-path check (one ``orjson.loads``); ``parse_body`` applies
the same rule before normalising, so a body the receiver accepted always parses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from schemas.errors import BodyError


def _jtype(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "array"
    return "object"


_WS = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


def _split_concatenated(body: bytes | bytearray | memoryview | str) -> list[Any] | None:
    """``{...}\\n{...}`` (Splunk HEC batching): the decoded objects, or None if not that shape."""
    try:
        text = body if isinstance(body, str) else bytes(body).decode()
    except UnicodeDecodeError:
        return None
    docs: list[Any] = []
    i, n = 0, len(text)
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]  # \s* always matches
        if i >= n:
            break
        try:
            _, end = _DECODER.raw_decode(text, i)
            docs.append(orjson.loads(text[i:end]))
        except ValueError:  # json.JSONDecodeError and orjson.JSONDecodeError both are
            return None
        i = end
    return docs if len(docs) > 1 else None


def decode_body(body: bytes | bytearray | memoryview | str) -> dict[str, Any] | list[dict[str, Any]]:
    """The decoded document; raises ``BodyError`` (with ``.reason``) for anything not acceptable."""
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
