"""The telemetry field catalog and value coercion for columnar sinks (the lake).

``coerce_value(field, value)`` spreads one ``data`` value over typed columns. It never raises
and never loses information: a value that does not fit the field's catalog kind lands in the
column of its own JSON type (a string that is not a number stays in ``value_string``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from importlib.resources import files
from typing import Any, NamedTuple

import orjson

__all__ = [
    "FIELDS",
    "KINDS",
    "NULL",
    "TYPED_KINDS",
    "FieldSpec",
    "TypedValue",
    "coerce_value",
    "field_kind",
    "is_mistyped",
]

#: Catalog kinds: target column(s) of a field.
KINDS = frozenset({"double", "long", "bool", "enum", "string", "epoch_s", "location", "json", "any"})


class FieldSpec(NamedTuple):
    """One catalog row (schemas/data/fields.tsv)."""

    name: str
    proto: int | None  # fleet-telemetry Field number; None if not in the proto snapshot
    json_type: str  # OpenAPI JSON type ("" if unknown)
    kind: str  # one of KINDS
    values: tuple[str, ...]  # enum wire values, or object keys as "key:type"


class TypedValue(NamedTuple):
    """Lake columns for one field value; all None for null."""

    value_double: float | None = None
    value_long: int | None = None
    value_bool: bool | None = None
    value_string: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    value_json: str | None = None


NULL = TypedValue()


def _load() -> dict[str, FieldSpec]:
    text = files("schemas").joinpath("data/fields.tsv").read_text(encoding="utf-8")
    out: dict[str, FieldSpec] = {}
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for line in lines[1:]:  # skip header
        name, proto, json_type, kind, values = (line.split("\t") + [""] * 5)[:5]
        out[name] = FieldSpec(
            name=name,
            proto=int(proto) if proto else None,
            json_type=json_type,
            kind=kind,
            values=tuple(v for v in values.split(",") if v),
        )
    return out


#: Field name -> spec, for every known field (proto fields + newer Teslemetry names).
FIELDS: dict[str, FieldSpec] = _load()
_KIND: dict[str, str] = {name: spec.kind for name, spec in FIELDS.items()}
#: Field name -> catalog kind (read-only use: ``field_kind`` without the call, for hot loops).
FIELD_KINDS: Mapping[str, str] = _KIND


def field_kind(field: str) -> str | None:
    """The catalog kind of ``field`` or None for a field the catalog does not know."""
    return _KIND.get(field)


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_LOC_STR = re.compile(
    r"\(?\s*(-?\d+(?:\.\d+)?)\s*([NS])?\s*,\s*(-?\d+(?:\.\d+)?)\s*([EW])?\s*\)?", re.ASCII | re.IGNORECASE
)


def _json(v: Any) -> str:
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()


def _num(v: int | float, integral: bool) -> TypedValue:
    """A JSON number into value_long (``integral`` kinds, when whole and in range) or value_double."""
    if isinstance(v, int):
        if integral and _I64_MIN <= v <= _I64_MAX:
            return TypedValue(value_long=v)
        return TypedValue(value_double=float(v))
    if integral and v.is_integer() and _I64_MIN <= v <= _I64_MAX:
        return TypedValue(value_long=int(v))
    return TypedValue(value_double=v)


def _str_num(s: str, integral: bool) -> TypedValue | None:
    """A numeric string as a number; None if it is not one (or not finite)."""
    if integral:
        try:
            return _num(int(s), True)
        except ValueError:
            pass
    try:
        f = float(s)
    except ValueError:
        return None
    if not math.isfinite(f):
        return None
    return _num(f, integral)


def _coord(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _dict(v: dict[str, Any]) -> TypedValue:
    lat = _coord(v.get("latitude"))
    lon = _coord(v.get("longitude"))
    if lat is not None and lon is not None:
        return TypedValue(latitude=lat, longitude=lon, value_json=_json(v))
    return TypedValue(value_json=_json(v))


def _infer(v: Any) -> TypedValue:
    """By JSON type only."""
    t = type(v)
    if t is bool:
        return TypedValue(value_bool=v)
    if t is int:
        return _num(v, True)
    if t is float:
        return TypedValue(value_double=v)
    if t is str:
        return TypedValue(value_string=v)
    if t is dict:
        return _dict(v)
    if t is list:
        return TypedValue(value_json=_json(v))
    return TypedValue(value_string=str(v))  # pragma: no cover - not a JSON value


def _location_str(s: str) -> TypedValue:
    """FT's legacy ``"(37.41 N, 122.14 W)"`` rendering; a plain ``"lat, lon"`` works too."""
    m = _LOC_STR.fullmatch(s.strip())
    if m is None:
        return TypedValue(value_string=s)
    lat, ns, lon, ew = float(m[1]), m[2], float(m[3]), m[4]
    if ns and ns.upper() == "S":
        lat = -lat
    if ew and ew.upper() == "W":
        lon = -lon
    return TypedValue(value_string=s, latitude=lat, longitude=lon)


def coerce_value(field: str, value: Any) -> TypedValue:
    """Typed columns for ``data[field] = value`` (Teslemetry typed or string-encoded values)."""
    if value is None:
        return NULL
    kind = _KIND.get(field, "any")
    t = type(value)
    if kind == "double" or kind == "long" or kind == "epoch_s":
        integral = kind != "double"
        if t is int or t is float:
            return _num(value, integral)
        if t is str:
            return _str_num(value, integral) or TypedValue(value_string=value)
        return _infer(value)
    if kind == "bool":
        if t is bool:
            return TypedValue(value_bool=value)
        if t is str:
            low = value.strip().lower()
            if low == "true":
                return TypedValue(value_bool=True)
            if low == "false":
                return TypedValue(value_bool=False)
            num = _str_num(value, True)
            if num is None:
                return TypedValue(value_string=value)
            value = num.value_long if num.value_long is not None else num.value_double
            t = type(value)
        if t is int or t is float:
            if value == 0 or value == 1:
                return TypedValue(value_bool=bool(value))
            return _num(value, True)
        return _infer(value)
    if kind == "location":
        if t is dict:
            return _dict(value)
        if t is str:
            return _location_str(value)
        return _infer(value)
    return _infer(value)  # enum, string, json, any


#: Kinds whose values have a column of their own: a value that does not land there is *mistyped*
#: (``is_mistyped``). Enum, string, json and any take every JSON type as it is.
TYPED_KINDS = frozenset({"double", "long", "epoch_s", "bool", "location"})


def is_mistyped(kind: str | None, tv: TypedValue) -> bool:
    """True when a non-null value of a field of ``kind`` did not land in the kind's column(s): a
    number field whose value is an object, a list, a bool or a non-numeric string; a bool field
    whose value is not a bool (nor 0/1, "true"/"false"); a location without coordinates. Such a value
    is kept (``value_json``/``value_string``/...) but a query over the kind's column skips it."""
    if kind not in TYPED_KINDS or tv == NULL:
        return False
    if kind == "bool":
        return tv.value_bool is None
    if kind == "location":
        return tv.latitude is None
    return tv.value_double is None and tv.value_long is None
