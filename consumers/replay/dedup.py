"""Each ``event_id`` once per replay: the seen-set of one partition, bounded by a receive-time horizon.

A redelivered webhook (Teslemetry retries; a forwarder re-sends a chunk after a crash) becomes a
second Kafka record with the same ``event_id``. The ``event_id`` is a digest of the event's type, VIN,
``createdAt`` and payload, so both copies have the same key and land in the same partition: one
seen-set per partition finds every copy, and the first record read (the lowest offset: the earliest
arrival) wins. That is also the copy the lake keeps (its views keep the lowest Kafka position), so a
Kafka replay and a lake replay of a window give the same events in the same order.

Memory stays bounded for any window: an ``event_id`` is forgotten once the partition has shown a
record *received* more than ``horizon_ms`` after the first copy (``received_at`` header: the
receiver's clock, in arrival order, unlike ``created_at``). Teslemetry gives up on a webhook 24 h
after its first attempt, so with the default horizon of 24 h every redelivery still finds its first
copy; the set holds the selected events of at most one day per partition (about 50 bytes each).
``horizon_ms=0`` keeps every id (exact for any lateness; memory grows with the window).
"""

from __future__ import annotations

from collections import deque

__all__ = ["DEFAULT_HORIZON_MS", "SeenIds"]

DEFAULT_HORIZON_MS = 24 * 3_600_000


class SeenIds:
    """The event_ids emitted from one partition, in arrival order, forgotten past the horizon."""

    __slots__ = ("_high", "_ids", "_order", "duplicates", "horizon_ms")

    def __init__(self, horizon_ms: int = DEFAULT_HORIZON_MS) -> None:
        self.horizon_ms = horizon_ms
        self._ids: set[bytes] = set()
        self._order: deque[tuple[int, bytes]] = deque()
        self._high = 0  # the newest receive time seen in the partition
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._ids)

    def first(self, event_id: str, received_ms: int) -> bool:
        """True for the first record of ``event_id`` (emit it); False for a later copy (counted)."""
        try:
            key = bytes.fromhex(event_id)
        except ValueError:  # not our hex digest: keep it as text
            key = event_id.encode()
        if received_ms > self._high:
            self._high = received_ms
            if self.horizon_ms:
                self._forget(received_ms - self.horizon_ms)
        if key in self._ids:
            self.duplicates += 1
            return False
        self._ids.add(key)
        if self.horizon_ms:
            self._order.append((received_ms, key))
        return True

    def _forget(self, before_ms: int) -> None:
        order, ids = self._order, self._ids
        while order and order[0][0] < before_ms:
            ids.discard(order.popleft()[1])
