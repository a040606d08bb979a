"""Field catalog and coerce_value."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.fields import FIELDS, KINDS, NULL, TypedValue, coerce_value, field_kind


def test_catalog_loaded() -> None:
    assert len(FIELDS) == 266
    assert {s.kind for s in FIELDS.values()} <= KINDS
    assert FIELDS["VehicleSpeed"].proto == 4 and field_kind("VehicleSpeed") == "double"
    assert field_kind("Gear") == "enum" and "ShiftStateD" in FIELDS["Gear"].values
    assert field_kind("Location") == "location"
    assert field_kind("ChargeLimitSoc") == "long"  # TSA says boolean; it is a percentage
    assert field_kind("GpsAccuracyMeters") == "double" and FIELDS["GpsAccuracyMeters"].proto is None
    assert field_kind("NoSuchField") is None


def tv(**kw: Any) -> TypedValue:
    return TypedValue(**kw)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("VehicleSpeed", 34.797, tv(value_double=34.797)),
        ("VehicleSpeed", "34.797", tv(value_double=34.797)),
        ("VehicleSpeed", 34, tv(value_double=34.0)),
        ("VehicleSpeed", "fast", tv(value_string="fast")),
        ("VehicleSpeed", "NaN", tv(value_string="NaN")),
        ("VehicleSpeed", True, tv(value_bool=True)),
        ("ChargerPhases", 3, tv(value_long=3)),
        ("ChargerPhases", 3.0, tv(value_long=3)),
        ("ChargerPhases", "3", tv(value_long=3)),
        ("ChargerPhases", 2.5, tv(value_double=2.5)),  # fractional: not lost
        ("ChargerPhases", "2.5", tv(value_double=2.5)),
        ("ChargeLimitSoc", 80, tv(value_long=80)),
        ("ScheduledChargingStartTime", 1783072740, tv(value_long=1783072740)),
        ("Locked", True, tv(value_bool=True)),
        ("Locked", "true", tv(value_bool=True)),
        ("Locked", "False", tv(value_bool=False)),
        ("Locked", 0, tv(value_bool=False)),
        ("DriveRail", "1", tv(value_bool=True)),
        ("DriveRail", 7, tv(value_long=7)),
        ("Locked", "maybe", tv(value_string="maybe")),
        ("Gear", "ShiftStateD", tv(value_string="ShiftStateD")),
        ("Gear", 4, tv(value_long=4)),
        ("Version", "2024.38.7", tv(value_string="2024.38.7")),
        (
            "Location",
            {"latitude": 30.2226645, "longitude": -97.6213806},
            tv(
                latitude=30.2226645,
                longitude=-97.6213806,
                value_json='{"latitude":30.2226645,"longitude":-97.6213806}',
            ),
        ),
        (
            "Location",
            {"latitude": "1.5", "longitude": "2"},
            tv(latitude=1.5, longitude=2.0, value_json='{"latitude":"1.5","longitude":"2"}'),
        ),
        ("Location", {"latitude": None}, tv(value_json='{"latitude":null}')),
        (
            "Location",
            "(37.41 N, 122.14 W)",
            tv(value_string="(37.41 N, 122.14 W)", latitude=37.41, longitude=-122.14),
        ),
        ("Location", "somewhere", tv(value_string="somewhere")),
        (
            "DoorState",
            {"TrunkRear": True, "DriverFront": False},
            tv(value_json='{"DriverFront":false,"TrunkRear":true}'),
        ),
        ("TpmsHardWarnings", {"frontLeft": True}, tv(value_json='{"frontLeft":true}')),
        ("NewField", 1, tv(value_long=1)),
        ("NewField", 1.0, tv(value_double=1.0)),
        ("NewField", "x", tv(value_string="x")),
        ("NewField", "1", tv(value_string="1")),  # unknown field: JSON type decides
        ("NewField", False, tv(value_bool=False)),
        ("NewField", [1, 2], tv(value_json="[1,2]")),
        (
            "NewField",
            {"latitude": 1, "longitude": 2},
            tv(latitude=1.0, longitude=2.0, value_json='{"latitude":1,"longitude":2}'),
        ),
        ("Experimental_1", 5, tv(value_long=5)),
        ("VehicleSpeed", 2**70, tv(value_double=float(2**70))),
        ("ChargerPhases", 2**70, tv(value_double=float(2**70))),
    ],
)
def test_coerce(field: str, value: Any, expected: TypedValue) -> None:
    assert coerce_value(field, value) == expected


@pytest.mark.parametrize("field", ["VehicleSpeed", "Locked", "Gear", "Location", "DoorState", "Unknown_x"])
def test_null_is_all_none(field: str) -> None:
    assert coerce_value(field, None) is NULL
    assert all(v is None for v in NULL)


def test_column_names() -> None:
    assert TypedValue._fields == (
        "value_double",
        "value_long",
        "value_bool",
        "value_string",
        "latitude",
        "longitude",
        "value_json",
    )


@pytest.mark.parametrize(
    ("field", "value", "mistyped"),
    [
        ("Odometer", {"x": [1]}, True), ("Odometer", [1, 2], True), ("Odometer", "unknown", True),
        ("Odometer", True, True), ("Odometer", "12.5", False), ("Odometer", 12, False), ("Odometer", None, False),
        ("Locked", 5, True), ("Locked", "maybe", True), ("Locked", 1, False), ("Locked", "true", False),
        ("Location", 12, True), ("Location", {"lat": 1}, True), ("Location", "(37.4 N, 122.1 W)", False),
        ("Location", {"latitude": 1, "longitude": 2}, False),
        ("Gear", 3, False), ("NotInTheCatalog", {"any": "thing"}, False),  # untyped kinds take anything
    ],
)
def test_is_mistyped(field: str, value: object, mistyped: bool) -> None:
    from schemas.fields import field_kind, is_mistyped

    assert is_mistyped(field_kind(field), coerce_value(field, value)) is mistyped
