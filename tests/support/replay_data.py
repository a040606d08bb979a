"""Test data for the replay tests: a few hours of history for a few VINs, produced as the forwarder
publishes (``produce_envelopes``) into every topic of the contract; ``tpipe`` run in-process."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from plumbing.kafka_clients import ensure_topics
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.parse import parse_object
from schemas.topics import all_event_topics
from tests.support.events import iso
from tests.support.kafka_broker import produce_envelopes
from tpipe.cli import main as tpipe_main

VINS = ("5YJ3E1EA0PF000000", "5YJ3E1EA0PF000001", "5YJ3E1EA0PF000002", "5YJ3E1EA0PF000003")
MIN = 60_000


@dataclass
class History:
    """What was produced, in production order (= per-partition arrival order), redeliveries included."""

    base_ms: int
    envelopes: list[Envelope] = field(default_factory=list)  # every record, redelivered copies too
    late: list[Envelope] = field(default_factory=list)  # produced ~30 min after their created_at
    redelivered: list[Envelope] = field(default_factory=list)  # second copies: same event_id, later

    def select(self, types: set[str], vins: set[str], from_ms: int, to_ms: int) -> list[Envelope]:
        """The distinct events of the window (each event_id once: its first record), in production order."""
        seen: set[str] = set()
        out = []
        for e in self.envelopes:
            if e.type in types and e.vin in vins and from_ms <= e.created_at_ms < to_ms and e.event_id not in seen:
                seen.add(e.event_id)
                out.append(e)
        return out

    def copies(self, types: set[str], vins: set[str], from_ms: int, to_ms: int) -> int:
        """Redelivered records of the window (what a replay leaves out)."""
        return sum(1 for e in self.redelivered
                   if e.type in types and e.vin in vins and from_ms <= e.created_at_ms < to_ms)


def build_history(base_ms: int, minutes: int = 180) -> History:
    """Per minute per VIN a ``data`` event; a ``state`` every 10 min; an ``alerts`` every 30 min.
    One ``data`` event of VIN 0 created at +110.5 min is produced late, after the +140 min events.

    Teslemetry redelivers: every 7th minute one webhook (a VIN's ``data`` event, or its ``state`` /
    ``connectivity`` event when it has one that minute) is received again 3 minutes later, and every
    13th minute one right away: the same payload, so the same event_id, as a second Kafka record."""
    h = History(base_ms)
    again: dict[int, list[dict[str, object]]] = {}
    late_payload = {"createdAt": iso(base_ms + 110 * MIN + 30_000), "vin": VINS[0], "data": {"Odometer": 1.5}}
    for i in range(minutes):
        t = base_ms + i * MIN
        for n, vin in enumerate(VINS):
            payloads = [{"createdAt": iso(t + n), "vin": vin, "data": {"VehicleSpeed": i, "BatteryLevel": 50 + n}}]
            if i % 10 == n:
                payloads.append({"createdAt": iso(t + n + 1), "vin": vin, "state": "online" if i % 20 else "asleep"})
            if i % 30 == n:
                payloads.append({"createdAt": iso(t + n + 2), "vin": vin, "alerts": [
                    {"name": f"ALERT_{i}", "audiences": ["Customer"], "startedAt": iso(t)}]})
            if i % 15 == n:  # fields of every lake column kind, and the other lake tables
                payloads.append({"createdAt": iso(t + n + 3), "vin": vin, "data": {
                    "Location": {"latitude": 52.09 + i / 1000, "longitude": 5.12}, "Gear": "ShiftStateD",
                    "Locked": i % 2 == 0, "Odometer": 10423.6 + i, "MinutesToArrival": None,
                    "DoorState": {"DriverFront": False, "TrunkRear": True}}})
                payloads.append({"createdAt": iso(t + n + 4), "vin": vin, "networkInterface": "wifi",
                                 "status": "CONNECTED" if i % 30 else "DISCONNECTED"})
            if i % 45 == n:
                payloads.append({"createdAt": iso(t + n + 5), "vin": vin, "vehicle_data": {
                    "vin": vin, "state": "online", "charge_state": {"battery_level": 70 + n}}})
            for p in payloads:
                h.envelopes.extend(parse_object(p, received_at_ms=t + 5_000))
            if i % 7 == 0 and n == (i // 7) % len(VINS):
                again.setdefault(i + 3, []).append(payloads[-1])
            if i % 13 == 0 and n == (i // 13) % len(VINS):
                copy = parse_object(payloads[0], received_at_ms=t + 6_000)
                h.envelopes.extend(copy)
                h.redelivered.extend(copy)
        for p in again.pop(i, []):
            copy = parse_object(p, received_at_ms=t + 7_000)
            h.envelopes.extend(copy)
            h.redelivered.extend(copy)
        if i == 140:
            late = parse_object(late_payload, received_at_ms=t)
            h.envelopes.extend(late)
            h.late.extend(late)
    return h


async def produce_history(settings: KafkaSettings, history: History) -> None:
    await ensure_topics(settings, all_event_topics(settings.topic_prefix))
    await produce_envelopes(settings, history.envelopes)


def make_history(settings: KafkaSettings) -> History:
    base = (int(time.time() * 1000) // MIN) * MIN - 4 * 60 * MIN  # 4 h ago: well inside any retention
    h = build_history(base)
    asyncio.run(produce_history(settings, h))
    return h


def run_cli(*argv: str) -> int:
    """``tpipe <argv>`` in-process (``tpipe.cli.main``): its exit code."""
    return tpipe_main(list(argv))


def kafka_args(settings: KafkaSettings) -> list[str]:
    return ["--kafka", settings.kafka, "--topic-prefix", settings.topic_prefix]
