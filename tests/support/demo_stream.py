"""A generated, realistic stream for trying the lake (and for docs/lake.md's example output).

    python -m tests.support.demo_stream --kafka 127.0.0.1:9092 --topic-prefix teslemetry [--days 2]

Three vehicles, each day: a morning drive (Odometer, VehicleSpeed, Location, Gear every 30 s),
an evening charging session (DetailedChargeState, BatteryLevel every 5 min), state and
connectivity changes and one vehicle_data snapshot. One vehicle sends string-typed values (as
older firmware does) and a few webhooks are delivered twice, as a retrying sender would.
Events go through the real parser and are published as the forwarder publishes them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from tests.support.events import BASE_MS, event, iso
from tests.support.kafka_broker import produce_envelopes

START_MS = BASE_MS  # 2026-01-01T00:00:00Z
VEHICLES = (
    # vin, home (lat, lon), km/h cruise, strings?
    ("5YJ3E1EA7KF000001", (37.4419, -122.1430), 62.0, False),
    ("5YJYGDEE1LF000002", (47.6062, -122.3321), 48.0, False),
    ("LRW3F7EK4NC000003", (30.2672, -97.7431), 75.0, True),
)


def generate(days: int = 2) -> list[Envelope]:
    out: list[Envelope] = []
    for n, (vin, (lat0, lon0), speed, as_strings) in enumerate(VEHICLES):
        odo = 12_000.0 + 3_000 * n
        soc = 80.0 - 5 * n

        def data(ms: int, fields: dict[str, Any], *, vin: str = vin, as_strings: bool = as_strings) -> None:
            if as_strings:
                fields = {k: (str(v).lower() if isinstance(v, bool) else str(v))
                          if isinstance(v, int | float) else v for k, v in fields.items()}
            out.append(event({"createdAt": iso(ms), "vin": vin, "data": fields}, ms + 150))

        for d in range(days):
            day0 = START_MS + d * 86_400_000
            wake = day0 + (7 * 3600 + 20 * 60 + n * 600) * 1000
            out.append(event({"createdAt": iso(wake - 5000), "vin": vin, "state": "online"}, wake))
            out.append(event({"createdAt": iso(wake - 4000), "vin": vin, "networkInterface": "cellular",
                             "status": "CONNECTED"}, wake))
            steps = 50 + 10 * n + 15 * d  # 30 s apart
            for i in range(steps):
                ms = wake + i * 30_000
                v = speed * (0.6 + 0.4 * math.sin(i / 7)) if 0 < i < steps - 1 else 0.0
                odo += v / 3.6 * 30 / 1609.344  # miles, as the car reports
                soc -= v / 3.6 * 30 / 1000 * 0.16
                heading = (n + d) * 0.7
                dist_deg = (i + 1) * 0.0015
                fields: dict[str, Any] = {
                    "Odometer": round(odo, 3),
                    "VehicleSpeed": round(v, 1),
                    "Location": {"latitude": round(lat0 + dist_deg * math.cos(heading), 6),
                                 "longitude": round(lon0 + dist_deg * math.sin(heading), 6)},
                }
                if i in (0, steps - 1):
                    fields["Gear"] = "ShiftStateD" if i == 0 else "ShiftStateP"
                if i % 10 == 0:
                    fields["BatteryLevel"] = round(soc, 1)
                data(ms, fields)
            park = wake + steps * 30_000
            out.append(event({"createdAt": iso(park + 60_000), "vin": vin, "state": "asleep"}, park + 60_100))
            # evening charge
            plug = day0 + (18 * 3600 + 40 * 60 + n * 1500) * 1000
            data(plug, {"DetailedChargeState": "DetailedChargeStateStarting", "ChargePortDoorOpen": True})
            data(plug + 20_000, {"DetailedChargeState": "DetailedChargeStateCharging", "BatteryLevel": round(soc, 1)})
            minutes = 70 + 25 * n
            for m in range(5, minutes, 5):
                soc = min(90.0, soc + 0.55 + 0.1 * n)
                data(plug + 20_000 + m * 60_000, {"BatteryLevel": round(soc, 1), "ChargerVoltage": 240 - n})
            done = plug + 20_000 + minutes * 60_000
            data(done, {"DetailedChargeState": "DetailedChargeStateComplete", "BatteryLevel": round(soc, 1)})
            data(done + 30 * 60_000, {"DetailedChargeState": "DetailedChargeStateDisconnected",
                                      "ChargePortDoorOpen": False, "MinutesToArrival": None})
            out.append(event({"createdAt": iso(done + 31 * 60_000), "vin": vin, "vehicle_data": {
                "charge_state": {"battery_level": round(soc), "charging_state": "Disconnected"},
                "vehicle_state": {"odometer": round(odo, 1), "locked": True}}}, done + 31 * 60_000 + 200))
    # a retrying sender: a few webhooks arrive twice
    out.extend([out[3], out[40], out[len(out) // 2]])
    return out


def main() -> None:
    from plumbing.cli_settings import add_settings_arguments, settings_from_args

    parser = argparse.ArgumentParser(prog="python -m tests.support.demo_stream", description=__doc__)
    parser.add_argument("--days", type=int, default=2)
    add_settings_arguments(parser, KafkaSettings)
    args = parser.parse_args()
    settings = settings_from_args(KafkaSettings, args)
    n = asyncio.run(produce_envelopes(settings, generate(args.days)))
    print(f"published {n} events to {settings.topic_prefix}.*")


if __name__ == "__main__":
    main()
