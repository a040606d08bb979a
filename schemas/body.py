"""What a webhook body must be to be accepted: JSON (or concatenated JSON objects, Splunk HEC
batching) whose top level is an object or a non-empty array of objects, within ``BodyLimits``.

``check_body`` is the receiver's request-path check (one ``orjson.loads``); ``parse_body`` applies
the same rule with the same limits before normalising, so a body the receiver accepted always
parses, and nothing it acknowledged can fail later for being too deep or holding too many events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.errors import BodyError, BodyTooLargeError

__all__ = ["DEFAULT_LIMITS", "BodyLimits", "check_body", "decode_body"]


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bounds on one webhook body, far above anything Teslemetry sends (one event per request,
    a few levels deep; Splunk HEC batches of tens of events).

    ``max_depth``: nesting levels of arrays/objects, the top level counting as 1 (over it: 400).
    ``max_events``: objects in a top-level array (over it: 413).
    ``max_documents``: concatenated JSON documents (Splunk HEC batching; over it: 413).
    """

    max_depth: int = 64
    max_events: int = 1000
    max_documents: int = 1000


DEFAULT_LIMITS = BodyLimits()


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


def _too_deep(limit: int) -> BodyError:
    return BodyError(f"nesting deeper than {limit} levels")


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """True when ``doc`` nests arrays/objects more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        for child in children:
            ct = type(child)
            if ct is dict or ct is list:
                push((child, depth + 1))
    return False


def _check_depth(body: bytes | str, doc: Any, limit: int) -> None:
    # A document cannot nest deeper than it has opening brackets: for real traffic (a handful of
    # objects) this count settles it without walking the decoded document.
    if isinstance(body, str):
        openers = body.count("{") + body.count("[")
    else:
        openers = body.count(b"{") + body.count(b"[")
    if openers > limit and (type(doc) is dict or type(doc) is list) and _depth_exceeds(doc, limit):
        raise _too_deep(limit)


_WS = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


def _split_concatenated(text: str, limits: BodyLimits) -> list[Any] | None:
    """``{...}\\n{...}`` (Splunk HEC batching): the decoded documents, or None if not that shape.

    Stops at ``limits.max_documents + 1`` documents (``BodyTooLargeError``): a megabyte of ``{}{}``
    must not hold the event loop while it is split."""
    docs: list[Any] = []
    i, n = 0, len(text)
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]  # \s* always matches
        if i >= n:
            break
        if len(docs) >= limits.max_documents:
            raise BodyTooLargeError(f"more than {limits.max_documents} concatenated JSON documents in one body")
        try:
            _, end = _DECODER.raw_decode(text, i)
            docs.append(orjson.loads(text[i:end]))
        except RecursionError:
            raise _too_deep(limits.max_depth) from None
        except ValueError:  # json.JSONDecodeError and orjson.JSONDecodeError both are
            return None
        i = end
    return docs if len(docs) > 1 else None


def _as_text(body: bytes | bytearray | memoryview | str) -> str | None:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode()
    except UnicodeDecodeError:
        return None


def decode_body(
    body: bytes | bytearray | memoryview | str, limits: BodyLimits = DEFAULT_LIMITS
) -> dict[str, Any] | list[dict[str, Any]]:
    """The decoded document; raises ``BodyError`` (with ``.reason``) for anything not acceptable,
    ``BodyTooLargeError`` (a ``BodyError``) for more events or documents than ``limits`` allow."""
    raw: bytes | str = body if type(body) is bytes or type(body) is str else bytes(body)  # type: ignore[arg-type]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():  # orjson stops at 1024 levels
            raise _too_deep(limits.max_depth) from None
        text = _as_text(raw)
        docs = None if text is None else _split_concatenated(text, limits)
        if docs is None:
            raise BodyError(f"invalid JSON: {exc}") from None
        return _concatenated(raw, docs, limits)
    if type(doc) is dict:
        _check_depth(raw, doc, limits.max_depth)
        return doc
    if type(doc) is not list:
        raise BodyError(f"top level must be an object or an array of objects, got {_jtype(doc)}")
    if not doc:
        raise BodyError("empty array: no events")
    if len(doc) > limits.max_events:
        raise BodyTooLargeError(f"{len(doc)} events in one body; at most {limits.max_events} are accepted")
    for i, item in enumerate(doc):
        if type(item) is not dict:
            raise BodyError(f"array item {i} must be an object, got {_jtype(item)}")
    _check_depth(raw, doc, limits.max_depth)
    return doc


def _concatenated(raw: bytes | str, docs: list[Any], limits: BodyLimits) -> list[dict[str, Any]]:
    for i, item in enumerate(docs):
        if type(item) is not dict:
            raise BodyError(f"array item {i} must be an object, got {_jtype(item)}")
    _check_depth(raw, docs, limits.max_depth + 1)  # each document is one level below the list
    return docs


def check_body(body: bytes | bytearray | memoryview | str, limits: BodyLimits = DEFAULT_LIMITS) -> None:
    """Raise ``BodyError`` unless ``body`` is an acceptable webhook body (see module doc)."""
    decode_body(body, limits)
