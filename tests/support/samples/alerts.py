"""A synthetic stream of ``alerts`` and ``errors`` events (Teslemetry form), for demos and tests."""

from __future__ import annotations

import random
from typing import Any

from schemas.times import format_ms

__all__ = ["alert_event", "alert_stream", "error_event"]

CATALOG = [
    ("APP_w009_aebFault", ["Customer", "ServiceFix"], "AEB unavailable"),
    ("BMS_w043_cellTempHigh", ["Service"], "Battery cell temperature high"),
    ("CHG_a017_chargePortFault", ["Customer"], "Charge port fault"),
    ("VCFRONT_a192_12vBatteryLow", ["Customer", "Service"], "12V battery low"),
    ("UI_a020_wifiUnavailable", ["ServiceFix"], "Wi-Fi unavailable"),
]


def alert_event(vin: str, created_ms: int, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"createdAt": format_ms(created_ms, ""), "vin": vin, "alerts": list(alerts)}


def alert(name: str, audiences: list[str], started_ms: int, ended_ms: int | None = None, **extra: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"name": name, "audiences": audiences, "startedAt": format_ms(started_ms, ""), **extra}
    if ended_ms is not None:
        a["endedAt"] = format_ms(ended_ms, "")
    return a


def error_event(vin: str, created_ms: int, name: str, tags: dict[str, str], body: str = "") -> dict[str, Any]:
    return {
        "createdAt": format_ms(created_ms, ""),
        "vin": vin,
        "errors": [{"createdAt": format_ms(created_ms - 1000, ""), "name": name, "tags": tags, "body": body}],
    }


def alert_stream(*, vins: list[str], start_ms: int, count: int = 30, seed: int = 3) -> list[dict[str, Any]]:
    """For each of ``count`` occurrences: a start event and, for about two thirds, an end event."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(count):
        vin = rng.choice(vins)
        name, audiences, text = rng.choice(CATALOG)
        started = start_ms + i * 600_000 + rng.randrange(0, 300_000)
        out.append(alert_event(vin, started + 500, alert(name, audiences, started, description=text)))
        if rng.random() < 0.66:
            ended = started + rng.randrange(60_000, 3_600_000)
            out.append(alert_event(vin, ended + 500, alert(name, audiences, started, ended, description=text)))
        if rng.random() < 0.2:
            out.append(error_event(vin, started + 1500, "decode_error", {"field_name": "BatteryLevel", "name": "nan"}))
    out.sort(key=lambda e: e["createdAt"])
    return out
