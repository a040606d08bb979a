"""A synthetic stream of ``credits`` events (Teslemetry form), for demos and tests.

Prices follow events.md §5: 1 per command, 2 per vehicle-data refresh, 20 per wake-up. The first
event is a connect-time ``isCache`` snapshot; the balance only goes down (no top-ups) unless
``topup_at`` days are given.
"""

from __future__ import annotations

import random
from typing import Any

from schemas.times import format_ms, to_ms

__all__ = ["PRICES", "START", "credit_events"]

START = to_ms("2026-04-01T00:00:00Z") or 0  # where the tests' credit streams start

PRICES = {"wake_up": 20, "vehicle_data": 2, "command": 1}
_NAMES = {"wake_up": ["wake_up"], "vehicle_data": ["vehicle_data"], "command": ["door_lock", "honk_horn", "charge_start"]}


def credit_events(
    *,
    start_ms: int,
    days: int = 14,
    per_day: int = 20,
    balance: int = 5000,
    seed: int = 7,
    vin: str | None = None,
    topup_at: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Events in ``created_at`` order; ``topup_at`` = {day index: credits added at its start}."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = [
        {
            "createdAt": format_ms(start_ms, ""),
            "isCache": True,
            "credits": {"type": "snapshot", "cost": 0, "name": "snapshot", "balance": balance, "quota": {}},
        }
    ]
    for day in range(days):
        balance += (topup_at or {}).get(day, 0)
        base = start_ms + day * 86_400_000
        times = sorted(rng.randrange(60_000, 86_400_000) for _ in range(per_day))
        for t in times:
            kind = rng.choices(list(PRICES), weights=[1, 4, 6])[0]
            cost = PRICES[kind]
            balance -= cost
            ev: dict[str, Any] = {
                "createdAt": format_ms(base + t, ""),
                "credits": {"type": kind, "cost": cost, "name": rng.choice(_NAMES[kind]), "balance": balance},
            }
            if vin is not None:
                ev["vin"] = vin
            out.append(ev)
    return out
