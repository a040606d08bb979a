"""Event types, input formats and the payload keys that identify each type.

Teslemetry sends no ``type`` field: the type of an event is told by which *payload key* it
carries (events.md §1.1). ``PAYLOAD_KEYS`` is that table; ``OWNED_KEYS`` says which top-level
keys belong to a type when one object carrying several payload keys is split in two.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ENERGY_HISTORY_FIELDS",
    "ENERGY_TYPES",
    "OWNED_KEYS",
    "PAYLOAD_KEYS",
    "VEHICLE_TYPES",
    "EventType",
    "SourceFormat",
]


class EventType(StrEnum):
    """The Teslemetry SSE topic an event belongs to (``unknown``: parseable, not recognised)."""

    DATA = "data"
    STATE = "state"
    VEHICLE_DATA = "vehicle_data"
    ALERTS = "alerts"
    ERRORS = "errors"
    CONNECTIVITY = "connectivity"
    CONFIG = "config"
    CREDITS = "credits"
    LIVE_STATUS = "live_status"
    SITE_INFO = "site_info"
    TARIFF_CONTENT_V2 = "tariff_content_v2"
    ENERGY_TOTALS = "energy_totals"
    WALL_CONNECTOR_TOTALS = "wall_connector_totals"
    UNKNOWN = "unknown"


class SourceFormat(StrEnum):
    """The webhook body format an event arrived in (events.md §2)."""

    TESLEMETRY = "teslemetry"
    TESLA_RAW = "tesla_raw"
    SPLUNK = "splunk"


#: Energy-site events: ``Envelope.vin`` holds the site id (``site_id``, or ``id`` for totals).
ENERGY_TYPES: frozenset[EventType] = frozenset(
    {
        EventType.LIVE_STATUS,
        EventType.SITE_INFO,
        EventType.TARIFF_CONTENT_V2,
        EventType.ENERGY_TOTALS,
        EventType.WALL_CONNECTOR_TOTALS,
    }
)

#: Vehicle events: ``Envelope.vin`` is the VIN.
VEHICLE_TYPES: frozenset[EventType] = frozenset(
    {
        EventType.DATA,
        EventType.STATE,
        EventType.VEHICLE_DATA,
        EventType.ALERTS,
        EventType.ERRORS,
        EventType.CONNECTIVITY,
        EventType.CONFIG,
    }
)

#: Top-level key -> the type it identifies. ``totals`` is energy_totals or
#: wall_connector_totals depending on its content (see ``ENERGY_HISTORY_FIELDS``).
PAYLOAD_KEYS: dict[str, EventType] = {
    "data": EventType.DATA,
    "state": EventType.STATE,
    "vehicle_data": EventType.VEHICLE_DATA,
    "alerts": EventType.ALERTS,
    "errors": EventType.ERRORS,
    "networkInterface": EventType.CONNECTIVITY,
    "config": EventType.CONFIG,
    "credits": EventType.CREDITS,
    "live_status": EventType.LIVE_STATUS,
    "site_info": EventType.SITE_INFO,
    "tariff_content_v2": EventType.TARIFF_CONTENT_V2,
    "totals": EventType.ENERGY_TOTALS,
}

#: Keys that belong to one type; when an object is split, the other types' envelopes
#: do not get them. Keys owned by nobody (createdAt, vin, isCache, unknown keys) go to all.
OWNED_KEYS: dict[EventType, frozenset[str]] = {
    EventType.DATA: frozenset({"data"}),
    EventType.STATE: frozenset({"state"}),
    EventType.VEHICLE_DATA: frozenset({"vehicle_data"}),
    EventType.ALERTS: frozenset({"alerts"}),
    EventType.ERRORS: frozenset({"errors"}),
    EventType.CONNECTIVITY: frozenset({"networkInterface", "status", "connectionId"}),
    EventType.CONFIG: frozenset({"config"}),
    EventType.CREDITS: frozenset({"credits"}),
    EventType.LIVE_STATUS: frozenset({"live_status"}),
    EventType.SITE_INFO: frozenset({"site_info"}),
    EventType.TARIFF_CONTENT_V2: frozenset({"tariff_content_v2"}),
    EventType.ENERGY_TOTALS: frozenset({"totals", "date"}),
    EventType.WALL_CONNECTOR_TOTALS: frozenset({"totals", "date"}),
}

#: Tesla energy-history names; a ``totals`` object holding any of them is ``energy_totals``,
#: otherwise (keys are Wall Connector DINs) ``wall_connector_totals`` (PYS 1.3.0 is_energy_totals).
ENERGY_HISTORY_FIELDS: frozenset[str] = frozenset(
    {
        "solar_energy_exported",
        "generator_energy_exported",
        "grid_energy_imported",
        "grid_services_energy_imported",
        "grid_services_energy_exported",
        "grid_energy_exported_from_solar",
        "grid_energy_exported_from_generator",
        "grid_energy_exported_from_battery",
        "battery_energy_exported",
        "battery_energy_imported_from_grid",
        "battery_energy_imported_from_solar",
        "battery_energy_imported_from_generator",
        "consumer_energy_imported_from_grid",
        "consumer_energy_imported_from_solar",
        "consumer_energy_imported_from_battery",
        "consumer_energy_imported_from_generator",
        "total_home_usage",
        "total_battery_charge",
        "total_battery_discharge",
        "total_solar_generation",
        "total_grid_energy_exported",
    }
)
