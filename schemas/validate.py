"""Validation against the packaged JSON Schemas (schemas/jsonschema/), for the receiver's hot path.

The JSON Schema files are the source of truth (also referenced by asyncapi.yaml and checked with
the ``jsonschema`` package in the tests); here they are compiled once each, lazily, with
fastjsonschema (generated Python code), and cached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import fastjsonschema

from schemas.envelope import Envelope
from schemas.event_types import EventType

__all__ = [
    "compile_all",
    "load_schema",
    "schema_names",
    "validate_envelope_dict",
    "validate_event",
    "validate_payload",
]

_MAX_ERRORS = 20
_Validator = Callable[..., Any]
_compiled: dict[str, _Validator] = {}  # fast_fail: stops at the first error (the hot path)
_compiled_all: dict[str, _Validator] = {}  # collects every error, used once the fast one failed


def schema_names() -> list[str]:
    """Names of the packaged schemas (``envelope``, ``notification`` and one per event type)."""
    root = files("schemas").joinpath("jsonschema")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema document ``schemas/jsonschema/<name>.json`` (a fresh dict)."""
    text = files("schemas").joinpath("jsonschema", f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _validator(name: str) -> _Validator:
    v = _compiled.get(name)
    if v is None:
        v = _compiled[name] = fastjsonschema.compile(load_schema(name), fast_fail=True)
    return v


def _all_errors(name: str, value: Any, prefix: str) -> list[str]:
    v = _compiled_all.get(name)
    if v is None:
        v = _compiled_all[name] = fastjsonschema.compile(load_schema(name), fast_fail=False)
    try:
        v(value, name_prefix=prefix)
    except fastjsonschema.JsonSchemaValuesException as exc:
        return [e.message for e in exc.errors[:_MAX_ERRORS]]
    except fastjsonschema.JsonSchemaValueException as exc:  # pragma: no cover - fast_fail=False
        return [exc.message]
    return []  # pragma: no cover - the fast validator already failed


def _run(name: str, value: Any, prefix: str) -> list[str]:
    try:
        _validator(name)(value, name_prefix=prefix)
    except fastjsonschema.JsonSchemaValueException:
        return _all_errors(name, value, prefix)
    return []


def validate_payload(type: EventType | str, payload: Any) -> list[str]:
    """Errors of ``payload`` against ``<type>.json`` (empty if valid)."""
    return _run(str(type), payload, "payload")


_DATA = EventType.DATA
_DATA_VALUE_TYPES = frozenset({int, float, str, bool, dict, type(None)})
_created_at_re: re.Pattern[str] | None = None


def _data_certainly_valid(payload: Any) -> bool:
    """A sufficient condition for ``payload`` to be valid against ``data.json``, checked in plain
    Python (the common case on the hot path). False means "ask the JSON Schema", never "invalid";
    the checks are the schema's own (same pattern, same types), so True implies the schema agrees.
    """
    global _created_at_re
    if type(payload) is not dict:
        return False
    created, vin, data = payload.get("createdAt"), payload.get("vin"), payload.get("data")
    if type(created) is not str or type(vin) is not str or not vin or type(data) is not dict:
        return False
    if _created_at_re is None:
        _created_at_re = re.compile(load_schema("data")["properties"]["createdAt"]["pattern"])
    if _created_at_re.search(created) is None:
        return False
    if len(payload) > 3:  # more than the three required keys: check the optional typed ones
        for key, want in (("isResend", bool), ("isCache", bool), ("hec", dict)):
            if key in payload and type(payload[key]) is not want:
                return False
    # Every value's type is an allowed one (the set of value types, built in C, is a subset).
    return _DATA_VALUE_TYPES.issuperset(map(type, data.values()))


def validate_event(env: Envelope) -> list[str]:
    """Errors of an envelope built by this package (empty if valid).

    Checks the payload against its type's schema. The envelope fields are correct by
    construction for envelopes from ``parse_body`` / ``Envelope.from_json``, so only the payload
    is validated here; use ``validate_envelope_dict`` for foreign input.
    """
    if env.type is _DATA and _data_certainly_valid(env.payload):  # `is`: no Enum .value lookup
        return []
    name = env.type.value
    v = _compiled.get(name) or _validator(name)
    try:
        v(env.payload, name_prefix="payload")
    except fastjsonschema.JsonSchemaValueException:
        return _all_errors(name, env.payload, "payload")
    return []


def validate_envelope_dict(d: Any) -> list[str]:
    """Errors of a decoded wire envelope against ``envelope.json`` and its payload's schema."""
    errors = _run("envelope", d, "envelope")
    if errors:
        return errors
    return validate_payload(d["type"], d["payload"])


def compile_all() -> None:
    """Compile every schema now (e.g. at receiver start-up, to keep the first request fast)."""
    for name in schema_names():
        _validator(name)
