"""The JSON Schemas, asyncapi.yaml and the code must agree; every fixture must validate."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from referencing import Registry, Resource

from schemas import SCHEMA_VERSION, EventType, SourceFormat, all_event_topics, all_topics, parse_body
from schemas.envelope import WIRE_KEYS
from schemas.topics import HEADER_NAMES
from schemas.validate import (
    compile_all,
    load_schema,
    schema_names,
    validate_envelope_dict,
    validate_event,
    validate_payload,
)
from tests.support.paths import FIXTURES as FIXTURES_DIR

FIX = FIXTURES_DIR
FIXTURES = sorted([*FIX.rglob("*.json"), *FIX.rglob("*.ndjson")])
BASE = "https://teslemetry-pipeline.invalid/schemas/"
ASYNCAPI: dict[str, Any] = yaml.safe_load(files("schemas").joinpath("asyncapi.yaml").read_text())
SCHEMAS = {name: load_schema(name) for name in schema_names()}
REGISTRY: Registry[Any] = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in SCHEMAS.values()
)


def jsonschema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    v = jsonschema.Draft202012Validator(schema, registry=REGISTRY)
    return [e.message for e in v.iter_errors(value)]


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


# --- the schema files ----------------------------------------------------------------------


def test_schema_files() -> None:
    assert set(SCHEMAS) == {t.value for t in EventType} | {"envelope", "notification"}
    for name, s in SCHEMAS.items():
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert s["$id"] == f"{BASE}jsonschema/{name}.json"
    compile_all()  # fastjsonschema understands all of them


def test_envelope_schema_matches_the_code() -> None:
    env = SCHEMAS["envelope"]
    assert env["required"] == list(WIRE_KEYS)
    assert list(env["properties"]) == list(WIRE_KEYS)
    assert env["properties"]["type"]["enum"] == [t.value for t in EventType]
    assert env["properties"]["source_format"]["enum"] == [f.value for f in SourceFormat]
    assert env["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


# --- asyncapi.yaml -------------------------------------------------------------------------


def test_asyncapi_channels_are_the_topics_the_code_produces() -> None:
    assert ASYNCAPI["asyncapi"] == "3.0.0"
    addresses = [c["address"].replace("{prefix}", "p") for c in ASYNCAPI["channels"].values()]
    assert sorted(addresses) == sorted(all_topics("p"))
    assert [a for a in addresses if a in all_event_topics("p")] == all_event_topics("p")
    for c in ASYNCAPI["channels"].values():
        assert set(c["parameters"]) == ({"prefix"} if "{prefix}" in c["address"] else set())
    assert ASYNCAPI["components"]["parameters"]["prefix"]["default"] == "teslemetry"


def test_asyncapi_event_messages() -> None:
    for t in EventType:
        channel = ASYNCAPI["channels"][t.value]
        assert channel["address"] == "{prefix}." + t.value
        (msg_ref,) = channel["messages"].values()
        msg = resolve(ASYNCAPI, msg_ref["$ref"])
        schema = msg["payload"]["schema"]
        assert schema["allOf"][0] == {"$ref": "./jsonschema/envelope.json"}
        assert schema["allOf"][1]["properties"]["type"] == {"const": t.value}
        assert schema["allOf"][1]["properties"]["payload"] == {"$ref": f"./jsonschema/{t.value}.json"}
        headers = resolve(ASYNCAPI, msg["headers"]["$ref"])
        assert headers["required"] == list(HEADER_NAMES)
        assert "key" in msg["bindings"]["kafka"]
    ops = [o for o in ASYNCAPI["operations"].values()]
    assert {resolve(ASYNCAPI, o["channel"]["$ref"])["address"] for o in ops} == {
        c["address"] for c in ASYNCAPI["channels"].values()
    }
    for o in ops:
        for m in o["messages"]:
            resolve(ASYNCAPI, m["$ref"])  # operation messages point into their channel


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for k, v in node.items() for r in ([v] if k == "$ref" else _refs(v))]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_asyncapi_refs_resolve() -> None:
    refs = _refs(ASYNCAPI)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            resolve(ASYNCAPI, ref)
        else:
            assert ref.startswith("./jsonschema/") and ref[len("./jsonschema/") : -5] in SCHEMAS, ref


def message_schema(t: str) -> dict[str, Any]:
    """A channel's payload schema, as a standalone schema whose relative $refs resolve."""
    (msg_ref,) = ASYNCAPI["channels"][t]["messages"].values()
    schema = dict(resolve(ASYNCAPI, msg_ref["$ref"])["payload"]["schema"])
    schema["$id"] = BASE + "asyncapi.yaml"
    return schema


# --- fixtures validate --------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=[str(p.relative_to(FIX)) for p in FIXTURES])
def test_fixture_validates(path: Path) -> None:
    for env in parse_body(path.read_bytes(), received_at_ms=1746171080123):
        d = orjson.loads(env.to_json())
        assert jsonschema_errors(SCHEMAS["envelope"], d) == []
        assert jsonschema_errors(SCHEMAS[env.type.value], d["payload"]) == []
        assert jsonschema_errors(message_schema(env.type.value), d) == []
        assert validate_event(env) == []
        assert validate_envelope_dict(d) == []


def test_every_type_is_exercised_by_fixtures() -> None:
    seen = {e.type for p in FIXTURES for e in parse_body(p.read_bytes(), received_at_ms=1)}
    assert seen == set(EventType)


def test_dead_letter_and_notification_schemas() -> None:
    env = parse_body((FIX / "teslemetry/state.json").read_bytes(), received_at_ms=1)[0]
    dlq = ASYNCAPI["components"]["messages"]["deadLetter"]["payload"]["schema"] | {
        "$id": BASE + "asyncapi.yaml"
    }
    assert jsonschema_errors(dlq, orjson.loads(env.to_json())) == []
    from consumers.notify.model import Notification, notification_id

    n = Notification(
        notification_id=notification_id("alert", "V", "x"),
        kind="alert",
        subject="AEB unavailable",
        vin="V",
        created_at_ms=1746171072402,
        details={"name": "APP_w009_aebFault"},
    )
    assert jsonschema_errors(SCHEMAS["notification"], orjson.loads(n.to_json())) == []
    assert jsonschema_errors(dlq, orjson.loads(n.to_json())) == []


# --- invalid events: fastjsonschema and jsonschema agree -------------------------------------

V = "LRW3F7EK4NC700000"
T0 = "2024-10-04T10:45:17.537Z"
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("data", {"createdAt": T0, "vin": V, "data": {"A": [1, 2]}}, "payload.data.A"),
    ("data", {"createdAt": T0, "data": {"A": 1}}, "vin"),
    ("data", {"createdAt": "yesterday", "vin": V, "data": {}}, "payload.createdAt"),
    ("data", {"createdAt": T0, "vin": "", "data": {}}, "payload.vin"),
    ("state", {"createdAt": T0, "vin": V, "state": 1}, "payload.state"),
    ("alerts", {"createdAt": T0, "vin": V, "alerts": {"name": "x"}}, "payload.alerts"),
    ("alerts", {"createdAt": T0, "vin": V, "alerts": [{"audiences": []}]}, "name"),
    ("errors", {"createdAt": T0, "vin": V, "errors": [{"tags": {"a": 1}}]}, "payload.errors[0].tags.a"),
    ("credits", {"createdAt": T0, "credits": {"cost": 1}}, "balance"),
    ("credits", {"createdAt": T0, "credits": {"cost": "1", "balance": 2}}, "payload.credits.cost"),
    ("live_status", {"createdAt": T0, "live_status": {}}, "site_id"),
    ("tariff_content_v2", {"createdAt": T0, "site_id": 1, "tariff_content_v2": []}, "tariff_content_v2"),
    ("energy_totals", {"createdAt": T0, "id": 1, "totals": {"total_home_usage": "x"}}, "total_home_usage"),
    ("wall_connector_totals", {"createdAt": T0, "id": 1.5, "totals": {}}, "payload.id"),
    ("config", {"createdAt": T0, "vin": V, "config": {"fields": {"A": 5}}}, "payload.config.fields.A"),
    ("connectivity", {"createdAt": T0, "vin": V, "status": "CONNECTED"}, "networkInterface"),
]


@pytest.mark.parametrize(("etype", "payload", "where"), INVALID, ids=[f"{t}-{w}" for t, _, w in INVALID])
def test_invalid_payloads(etype: str, payload: dict[str, Any], where: str) -> None:
    fast = validate_payload(etype, payload)
    assert fast and any(where in e for e in fast), fast
    assert jsonschema_errors(SCHEMAS[etype], payload)


def test_validate_event_reports_all_errors() -> None:
    env = parse_body(
        orjson.dumps({"createdAt": "bad", "vin": V, "data": {"A": [1], "B": {"c": 1}, "C": []}}),
        received_at_ms=1,
    )[0]
    errors = validate_event(env)
    assert len(errors) == 3
    assert all(e.startswith("payload.") for e in errors)


def test_validate_envelope_dict_catches_envelope_errors() -> None:
    env = parse_body((FIX / "teslemetry/state.json").read_bytes(), received_at_ms=1)[0]
    d = env.to_dict()
    d["event_id"] = "nothex"
    assert any("event_id" in e for e in validate_envelope_dict(d))
    assert jsonschema_errors(SCHEMAS["envelope"], json.loads(orjson.dumps(d)))


def test_fast_data_check_never_accepts_what_the_schema_rejects() -> None:
    """The plain-Python fast path for `data` payloads is only a shortcut: whenever it says valid,
    the JSON Schema (the source of truth) says valid too; the mutations below include both kinds."""
    import copy
    import itertools

    import jsonschema

    from schemas.validate import _data_certainly_valid, load_schema

    schema = load_schema("data")
    base = {"createdAt": "2024-10-04T10:45:17.537Z", "vin": "V1", "isCache": True,
            "data": {"A": 1, "B": 2.5, "C": "x", "D": True, "E": None, "F": {"latitude": 1.0, "longitude": 2.0}}}
    variants = [
        {}, {"createdAt": 1}, {"createdAt": "2024-10-04 10:45:17Z"}, {"createdAt": "2024-10-04T10:45:17.537Z\n"},
        {"createdAt": "2024-10-04T10:45:17.1234567890Z"}, {"createdAt": "2024-10-04T10:45:17+02:00"},
        {"vin": ""}, {"vin": 5}, {"data": []}, {"data": {"X": [1]}}, {"data": {}}, {"isCache": "true"},
        {"isResend": 1}, {"hec": []}, {"hec": {"time": 1}}, {"unknownKey": [1, 2]},
    ]
    checked = 0
    for a, b in itertools.product(variants, repeat=2):
        payload = copy.deepcopy(base)
        payload.update(a)
        payload.update(b)
        fast = _data_certainly_valid(payload)
        schema_ok = not list(jsonschema.Draft202012Validator(schema).iter_errors(payload))
        if fast:
            assert schema_ok, payload
        checked += fast
        missing = copy.deepcopy(payload)
        missing.pop("vin", None)
        assert not _data_certainly_valid(missing)
    assert checked >= 25, f"the fast path covers the common shapes ({checked})"
