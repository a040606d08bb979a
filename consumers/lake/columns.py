"""One table's buffered rows as Python tuples until converted (``ColumnBuffer``): the reference the
worker's ``consumers.lake.arrow_buffer.ArrowBuffer`` is tested against, and ``_columns``, the tuples ->
Arrow conversion both use for the per-event values.

Each record adds one tuple of per-event values and, for tables with several rows per event
(``telemetry``: one per field), one tuple per row (and where its event's rows start). A commit sorts
the events, converts each group of tuples as one Arrow struct array and repeats the per-event columns
for their rows with a dictionary decode. (Row dicts through ``pa.Table.from_pylist`` cost about
2.3 µs a row and ~480 B each while buffered; see docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, repeat

import pyarrow as pa
import pyarrow.compute as pc

from consumers.lake.rows import EVENT_ID_AT, OFFSET_AT, PARTITION_AT, TOPIC_AT, EventValues, RowValues, Shape
from consumers.runtime import WorkerRecord

#: Next offset already stored per (topic, partition); rows below it are not committed again.
Floor = Mapping[tuple[str, int], int]


class ColumnBuffer:
    """The rows of the records added since the last ``clear``, for one table ``Shape``."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self._events: list[EventValues] = []
        self._rows: list[RowValues] = []
        self._starts: list[int] = []  # index in _rows of each event's first row (tables with row columns)

    def __len__(self) -> int:
        """Rows buffered."""
        return len(self._rows) if self.shape.row_columns else len(self._events)

    @property
    def events(self) -> int:
        return len(self._events)

    def add(self, rec: WorkerRecord) -> None:
        """Buffer ``rec``'s rows; raises what the builder raises, having added nothing."""
        ev, rows = self.shape.build(rec)
        if self.shape.row_columns:
            if rows is None:
                raise TypeError(f"builder of a table with row columns returned no rows for {rec.topic}")
            self._starts.append(len(self._rows))
            self._rows.extend(rows)
        self._events.append(ev)

    def event_ids(self) -> Iterator[str]:
        return (ev[EVENT_ID_AT] for ev in self._events)

    def clear(self) -> None:
        self._events, self._rows, self._starts = [], [], []

    def _event_rows(self, i: int) -> list[RowValues]:
        starts = self._starts
        end = starts[i + 1] if i + 1 < len(starts) else len(self._rows)
        return self._rows[starts[i] : end]

    def _reorder(self, order: Iterable[int]) -> None:
        """Keep the events at ``order`` (indices into the buffer), in that order, with their rows."""
        events = self._events
        if not self.shape.row_columns:
            self._events = [events[i] for i in order]
            return
        new_events: list[EventValues] = []
        new_rows: list[RowValues] = []
        new_starts: list[int] = []
        for i in order:
            new_events.append(events[i])
            new_starts.append(len(new_rows))
            new_rows.extend(self._event_rows(i))
        self._events, self._rows, self._starts = new_events, new_rows, new_starts

    def keep_events(self, keep: Callable[[EventValues], bool]) -> int:
        """Drop the events (and their rows) ``keep`` refuses; returns the rows dropped."""
        flags = [keep(ev) for ev in self._events]
        if all(flags):
            return 0
        before = len(self)
        self._reorder(i for i, f in enumerate(flags) if f)
        return before - len(self)

    def drop_below(self, floor: Floor) -> int:
        """Drop the events at offsets below ``floor`` of their partition; returns the rows dropped."""
        if not floor:
            return 0
        get = floor.get
        return self.keep_events(lambda ev: ev[OFFSET_AT] >= get((ev[TOPIC_AT], ev[PARTITION_AT]), -1))

    def to_arrow(self, schema: pa.Schema, sort_by: tuple[str, ...] = ()) -> pa.Table:
        """The buffered rows as a table of ``schema`` (columns it has that the shape does not fill are
        null; columns the shape fills that it lacks are left out). Rows come in the order they were
        added or, with ``sort_by`` (per-event columns), stably sorted by those ascending, nulls last:
        the order ``pa.Table.sort_by`` gives, found on the events, not on every row (the buffer keeps
        that order afterwards)."""
        shape = self.shape
        types = {f.name: f.type for f in schema}
        arrays = _columns(self._events, shape.event_columns, types)
        if sort_by and len(self._events) > 1:
            keys = pa.table({k: arrays[k] for k in sort_by})
            order = pc.sort_indices(keys, sort_keys=[(k, "ascending", "at_end") for k in sort_by])
            arrays = {k: v.take(order) for k, v in arrays.items()}
            self._reorder(order.to_pylist())
        n = len(self)
        if shape.row_columns:
            # per-event values repeated for each of the event's rows (a dictionary decode: cheaper
            # than ``take`` for long strings such as payload_rest)
            starts = [*self._starts, n]
            row_event = list(chain.from_iterable(repeat(i, starts[i + 1] - starts[i]) for i in range(len(self._starts))))
            idx = pa.array(row_event, type=pa.int32())
            arrays = {k: pa.DictionaryArray.from_arrays(idx, v).cast(v.type) for k, v in arrays.items()}
            arrays.update(_columns(self._rows, shape.row_columns, types))
        columns = [arrays[f.name] if f.name in arrays else pa.nulls(n, f.type) for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)


def _columns(
    values: list[tuple[object, ...]], names: tuple[str, ...], types: dict[str, pa.DataType]
) -> dict[str, pa.Array]:
    """Tuples (one per row, in ``names`` order) -> one array per name the schema has.

    Converted as one struct array and flattened: Arrow walks the tuples in C (~0.2 µs a row for
    nine columns, where ``zip(*values)`` alone took ~1.8 µs)."""
    if any(name not in types for name in names):  # a table without a column the shape fills
        keep = [i for i, name in enumerate(names) if name in types]
        values = [tuple(v[i] for i in keep) for v in values]
        names = tuple(names[i] for i in keep)
    struct = pa.struct([pa.field(name, types[name]) for name in names])
    arr = pa.array(values, type=struct)
    return dict(zip(names, arr.flatten(), strict=True))
