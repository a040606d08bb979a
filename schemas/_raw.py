"""Tesla raw (fleet-telemetry protobuf-JSON) datums -> Teslemetry ``{field: plain value}``.

A datum is ``{"key": "<Field>", "value": {"<oneofName>": <value>}}`` (events.md §3.4). The
oneof wrapper is dropped; 64-bit ints sent as JSON strings become ints; ``invalid: true``
becomes null; ``timeValue`` ``{hour, minute, second}`` becomes ``"HH:MM:SS"`` (FT's own
rendering); enum oneofs (``shiftStateValue`` ...) keep their string names; objects
(``locationValue``, ``doorValue`` ...) pass through; unknown oneofs pass through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["decode_datums", "decode_value"]


def _to_int(x: Any) -> Any:
    if isinstance(x, str):
        try:
            i = int(x)
        except ValueError:
            return x
        return i if -(2**63) <= i < 2**64 else x  # beyond 64 bits: keep the string (orjson limit)
    return x


def _to_float(x: Any) -> Any:
    if isinstance(x, str):
        try:
            f = float(x)
        except ValueError:
            return x
        return f if math.isfinite(f) else x  # "NaN"/"Infinity" have no JSON number form
    return x


def _to_bool(x: Any) -> Any:
    if isinstance(x, str):
        low = x.lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return x


def _to_time(x: Any) -> Any:
    if isinstance(x, dict):
        try:  # (unrolled: a generator here cost ~1 µs per datum)
            h = int(x.get("hour") or 0)
            m = int(x.get("minute") or 0)
            s = int(x.get("second") or 0)
        except (TypeError, ValueError):
            return x
        return f"{h:02d}:{m:02d}:{s:02d}"
    return x


def _invalid(x: Any) -> None:
    return None


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "intValue": _to_int,
    "longValue": _to_int,
    "floatValue": _to_float,
    "doubleValue": _to_float,
    "booleanValue": _to_bool,
    "timeValue": _to_time,
    "invalid": _invalid,
}
#: The converters that act on a non-string value; the others return a non-string unchanged.
_CONVERT_NON_STR: dict[str, Callable[[Any], Any]] = {"timeValue": _to_time, "invalid": _invalid}


def decode_value(v: Any) -> Any:
    """The plain value of one datum's ``value`` (a protojson ``Value`` oneof)."""
    if type(v) is not dict:
        return v
    if len(v) == 1:
        ((k, x),) = v.items()
    else:
        if not v or v.get("invalid") is True:
            return None
        rest = [(k, x) for k, x in v.items() if k != "invalid"]
        if len(rest) != 1:
            return v
        ((k, x),) = rest
    conv = _CONVERT.get(k)
    return x if conv is None else conv(x)


def decode_datums(datums: list[Any]) -> dict[str, Any] | None:
    """``{field: value}`` of a raw ``data`` array; None if any datum is not ``{key: str, ...}``."""
    out: dict[str, Any] = {}
    convert, convert_non_str = _CONVERT, _CONVERT_NON_STR
    for d in datums:
        if type(d) is not dict:
            return None
        key = d.get("key")
        if type(key) is not str:
            return None
        v = d.get("value")
        if type(v) is dict and len(v) == 1:  # the normal case, inlined
            ((k, x),) = v.items()
            # Same as decode_value, minus the calls that would return x unchanged: a number or
            # bool in intValue/doubleValue/booleanValue ... is already its plain value.
            conv = (convert if type(x) is str else convert_non_str).get(k)
            out[key] = x if conv is None else conv(x)
        else:
            out[key] = decode_value(v)
    return out
