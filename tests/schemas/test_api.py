"""The exported names other packages code against."""

from __future__ import annotations

import importlib

import schemas
from schemas.event_types import ENERGY_TYPES, EventType, SourceFormat


def test_exported_names_exist() -> None:
    for name in schemas.__all__:
        assert hasattr(schemas, name), name
    for mod, names in {
        "schemas.event_types": ["EventType", "SourceFormat", "ENERGY_TYPES"],
        "schemas.envelope": ["SCHEMA_VERSION", "Envelope", "EnvelopeError"],
        "schemas.parse": ["BodyError", "parse_body"],
        "schemas.topics": [
            "topic_for",
            "dlq_topic",
            "notifications_topic",
            "all_event_topics",
            "key_for",
            "headers_for",
        ],
        "schemas.fields": ["coerce_value", "TypedValue"],
    }.items():
        m = importlib.import_module(mod)
        for n in names:
            assert hasattr(m, n), f"{mod}.{n}"


def test_enum_values() -> None:
    assert [t.value for t in EventType] == [
        "data",
        "state",
        "vehicle_data",
        "alerts",
        "errors",
        "connectivity",
        "config",
        "credits",
        "live_status",
        "site_info",
        "tariff_content_v2",
        "energy_totals",
        "wall_connector_totals",
        "unknown",
    ]
    assert [f.value for f in SourceFormat] == ["teslemetry", "tesla_raw", "splunk"]
    assert {t.value for t in ENERGY_TYPES} == {
        "live_status",
        "site_info",
        "tariff_content_v2",
        "energy_totals",
        "wall_connector_totals",
    }


def test_no_imports_from_other_packages() -> None:
    import pathlib

    for p in pathlib.Path(schemas.__file__).parent.rglob("*.py"):
        text = p.read_text()
        for other in ("ingest", "consumers", "tpipe"):
            assert f"import {other}" not in text and f"from {other}" not in text, p
