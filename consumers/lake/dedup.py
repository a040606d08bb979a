"""The lake writer's dedup index: which event_ids a table already holds, in memory bounded by configuration.

A redelivered webhook has the same ``event_id`` and the same ``created_at`` as its first copy (both
are part of the id), so the question "is this event already in the table?" only concerns the rows of
its own hour of ``created_at``. The index therefore keeps, per hour, the *complete* set of the hour's
event_ids, as 16-byte keys (the id's 128 bits: 16 B each instead of ≈130 B for a Python ``str`` in a
``set``) in sorted NumPy runs:

* an hour is loaded from the table on first touch: a scan of ``event_id`` filtered to the hour, which
  Iceberg prunes to the data files whose ``created_at`` bounds overlap it (not the whole day);
* an hour stays complete: the ids this writer commits are added to it as a new sorted run (runs are
  merged geometrically, so a lookup searches O(log n) runs);
* at most ``max_ids`` ids and ``max_hours`` hours are held; least recently used hours are evicted
  and reloaded on demand;
* an hour with more ids than ``max_ids`` is never held: its records are confirmed against the table
  instead (one scan per batch, filtered by the hour and the batch's ids), counted in
  ``tpipe_lake_dedup_table_checks_total``: exact, bounded, but I/O per batch (raise ``--dedup-max-ids``).

So memory is ≈16 B × ``max_ids`` whatever the traffic, and the check stays exact for any hour.
"""

from __future__ import annotations

import binascii
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, In, LessThan
from pyiceberg.table import Table

__all__ = ["HOUR_MS", "HourIndex", "keys_of"]

HOUR_MS = 3_600_000
KEY = np.dtype("S16")
Keys = npt.NDArray[np.bytes_]
_TOO_BIG_REMEMBERED = 1024  # hours known not to fit (each is one int)


def keys_of(event_ids: Sequence[str]) -> Keys:
    """The 16-byte keys of 32-hex-digit event_ids (the envelope validates that form)."""
    return np.frombuffer(bytes.fromhex("".join(event_ids)), dtype=KEY)


def _keys_of_column(col: pa.Array | pa.ChunkedArray) -> Keys:
    """Keys of a string column of event_ids, decoded from its data buffer when every value is 32
    characters (no Python string per value), else value by value."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    out: list[Keys] = []
    for chunk in chunks:
        chunk = chunk.drop_null()
        if isinstance(chunk, pa.DictionaryArray):
            chunk = chunk.dictionary_decode()
        if not len(chunk):
            continue
        if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
            width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            _, offsets_buf, data_buf = chunk.buffers()
            offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
            start, end = int(offsets[0]), int(offsets[-1])
            if end - start == 32 * len(chunk) and bool(np.all(np.diff(offsets) == 32)):
                out.append(np.frombuffer(binascii.unhexlify(memoryview(data_buf)[start:end]), dtype=KEY))
                continue
        out.append(keys_of([v for v in chunk.to_pylist() if isinstance(v, str) and len(v) == 32]))
    return np.concatenate(out) if out else np.empty(0, dtype=KEY)


def _hour_filter(hour: int) -> BooleanExpression:
    start = datetime.fromtimestamp(hour * 3600, tz=UTC).isoformat()
    end = datetime.fromtimestamp((hour + 1) * 3600, tz=UTC).isoformat()
    return And(
        GreaterThanOrEqual("created_at", start),  # type: ignore[call-arg,arg-type]
        LessThan("created_at", end),  # type: ignore[call-arg,arg-type]
    )


class _Hour:
    """The complete, sorted event_id keys of one hour, as runs (geometrically merged)."""

    __slots__ = ("runs", "size")

    def __init__(self, keys: Keys) -> None:
        self.runs: list[Keys] = [np.unique(keys)] if len(keys) else []
        self.size = sum(len(r) for r in self.runs)

    def contains(self, keys: Keys) -> npt.NDArray[np.bool_]:
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            idx = np.searchsorted(run, keys)
            np.minimum(idx, len(run) - 1, out=idx)
            found |= run[idx] == keys
        return found

    def add(self, keys: Keys) -> int:
        """Add keys not yet held (what the writer just committed); returns how many were new."""
        new = np.unique(keys)
        if self.runs:
            new = new[~self.contains(new)]
        if not len(new):
            return 0
        runs = self.runs
        runs.append(new)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            merged = np.concatenate((runs[-2], runs[-1]))
            merged.sort(kind="stable")  # two sorted runs: a linear merge
            runs[-2:] = [merged]
        self.size += len(new)
        return len(new)


class HourIndex:
    """Exact event_id membership for one table, per hour of ``created_at``, within ``max_ids`` ids."""

    def __init__(self, max_ids: int, max_hours: int) -> None:
        self.max_ids = max_ids
        self.max_hours = max_hours
        self._hours: OrderedDict[int, _Hour] = OrderedDict()
        self._too_big: OrderedDict[int, None] = OrderedDict()
        self.size = 0  # ids held
        self.table_checks = 0  # records confirmed against the table (their hour does not fit)

    @property
    def nbytes(self) -> int:
        return self.size * KEY.itemsize

    def seen(self, table: Table, hours: npt.NDArray[np.int64], event_ids: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Which of ``event_ids`` (with their hours of ``created_at``) the table already holds."""
        out = np.zeros(len(event_ids), dtype=bool)
        if not len(event_ids):
            return out
        keys = keys_of(event_ids)
        for hour in np.unique(hours).tolist():
            sel = np.flatnonzero(hours == hour)
            held = self._hour(table, hour)
            if held is not None:
                out[sel] = held.contains(keys[sel])
            else:
                out[sel] = self._in_table(table, hour, [event_ids[i] for i in sel.tolist()])
        return out

    def add(self, hours: npt.NDArray[np.int64], event_ids: Sequence[str]) -> None:
        """Record committed event_ids in the hours held (an hour not held will be read from the table)."""
        if not len(event_ids):
            return
        keys = keys_of(event_ids)
        for hour in np.unique(hours).tolist():
            held = self._hours.get(hour)
            if held is not None:
                self.size += held.add(keys[hours == hour])
        self._evict(keep=None)

    def clear(self) -> None:
        self._hours.clear()
        self._too_big.clear()
        self.size = 0

    # --- internals ---------------------------------------------------------------------------
    def _hour(self, table: Table, hour: int) -> _Hour | None:
        held = self._hours.get(hour)
        if held is not None:
            self._hours.move_to_end(hour)
            return held
        if hour in self._too_big:
            return None
        held = self._load(table, hour)
        if held is None:
            self._too_big[hour] = None
            while len(self._too_big) > _TOO_BIG_REMEMBERED:
                self._too_big.popitem(last=False)
            return None
        self._hours[hour] = held
        self.size += held.size
        self._evict(keep=hour)
        return held

    def _load(self, table: Table, hour: int) -> _Hour | None:
        """The hour's ids from the table, or None when they alone exceed ``max_ids``."""
        if table.current_snapshot() is None:
            return _Hour(np.empty(0, dtype=KEY))
        scan = table.scan(row_filter=_hour_filter(hour), selected_fields=("event_id",))
        parts: list[Keys] = []
        n = 0
        for batch in scan.to_arrow_batch_reader():
            # telemetry repeats an event's id on each of its rows, next to each other (sorted files)
            keys = np.unique(_keys_of_column(batch.column("event_id")))
            parts.append(keys)
            n += len(keys)
            if n > self.max_ids:
                keys = np.unique(np.concatenate(parts))
                if len(keys) > self.max_ids:
                    return None
                parts, n = [keys], len(keys)
            # make room while reading, so the held ids plus this hour never exceed the bound
            self._evict(keep=None, extra=n)
        return _Hour(np.concatenate(parts) if parts else np.empty(0, dtype=KEY))

    def _evict(self, keep: int | None, extra: int = 0) -> None:
        hours = self._hours
        while hours and (self.size + extra > self.max_ids or len(hours) > self.max_hours):
            oldest = next(iter(hours))
            if oldest == keep:
                if len(hours) == 1:
                    break
                hours.move_to_end(oldest)
                continue
            self.size -= hours.pop(oldest).size

    def _in_table(self, table: Table, hour: int, event_ids: list[str]) -> npt.NDArray[np.bool_]:
        """Exact confirmation for an hour too large to hold: one scan of that hour for these ids."""
        self.table_checks += len(event_ids)
        if table.current_snapshot() is None:
            return np.zeros(len(event_ids), dtype=bool)
        wanted = set(event_ids)
        flt = And(_hour_filter(hour), In("event_id", wanted))  # type: ignore[call-arg,arg-type]
        found: set[str] = set()
        for batch in table.scan(row_filter=flt, selected_fields=("event_id",)).to_arrow_batch_reader():
            found.update(v for v in batch.column("event_id").to_pylist() if v is not None)
        return np.fromiter((e in found for e in event_ids), dtype=bool, count=len(event_ids))
