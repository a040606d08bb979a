"""One table's buffered rows as Arrow chunks, one per handled batch, until a commit (``ArrowBuffer``).

A chunk holds the per-event columns (one value per event), the per-row columns (tables with several
rows per event: ``telemetry``, one per field) and the number of rows of each event. Chunks are built
by the native builder (``consumers.lake.native``: the telemetry rows of a whole batch without Python
code per field) or, for the other tables and as the reference, from the Python builders' tuples
(``consumers.lake.rows``). Holding Arrow arrays instead of Python tuples also keeps the buffered rows
out of Python's garbage collector.

A commit sorts the *events* by (day, vin, created_at) — stable, nulls last — and then gives the rows
in that order, one table per ``day(created_at)`` partition (``day_tables``): the partition split the
writer needs without scanning the rows again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from consumers.lake.columns import Floor, _columns
from consumers.lake.native import telemetry_row_columns
from consumers.lake.rows import EventValues, RowValues, Shape, telemetry_event
from consumers.lake.tables import TABLES_BY_NAME
from consumers.runtime import Failure, WorkerRecord

IntArray = npt.NDArray[np.int64]
_DAY_US = 86_400_000_000


def _is_string(a: pa.Array) -> bool:
    return bool(pa.types.is_large_string(a.type) or pa.types.is_string(a.type))


def _repeat_by_index(values: pa.Array, expand: pa.Array) -> pa.DictionaryArray:
    """``values.take(expand)`` as a dictionary array of the distinct values (the few VINs, one topic
    ...): Parquet then has a small dictionary to write instead of one entry per event."""
    enc = values.dictionary_encode()
    return pa.DictionaryArray.from_arrays(enc.indices.take(expand), enc.dictionary)


def _dictionary(a: pa.Array) -> pa.Array:
    return a if pa.types.is_dictionary(a.type) else a.dictionary_encode()


def _concat(arrays: list[pa.Array]) -> pa.Array:
    """One array of ``arrays``; dictionary arrays sharing one dictionary stay dictionary arrays."""
    first = arrays[0]
    if not pa.types.is_dictionary(first.type):
        return pa.concat_arrays(arrays)
    if all(a.dictionary is first.dictionary or a.dictionary.equals(first.dictionary) for a in arrays):
        return pa.DictionaryArray.from_arrays(pa.concat_arrays([a.indices for a in arrays]), first.dictionary)
    return pa.concat_arrays([a.cast(first.type.value_type) for a in arrays]).dictionary_encode()


class Chunk(NamedTuple):
    events: dict[str, pa.Array]  # Shape.event_columns
    rows: dict[str, pa.Array]  # Shape.row_columns ({} for one row per event)
    counts: IntArray  # rows per event


class ArrowBuffer:
    """The rows of the records added since the last ``clear``, for one table (``Shape``).

    ``native`` builds the telemetry rows with ``consumers.lake.native``; otherwise (and always for the
    one-row-per-event tables) with the Python builder of the shape."""

    def __init__(self, table: str, shape: Shape, *, native: bool = True) -> None:
        self.shape = shape
        self.native = native and table == "telemetry"
        self.types = {f.name: f.type for f in TABLES_BY_NAME[table].arrow_schema}
        self._chunks: list[Chunk] = []
        self._rows = 0
        self._events = 0

    def __len__(self) -> int:
        """Rows buffered."""
        return self._rows

    @property
    def events(self) -> int:
        return self._events

    def clear(self) -> None:
        self._chunks, self._rows, self._events = [], 0, 0

    # --- intake ------------------------------------------------------------------------------
    def add_batch(self, records: Sequence[WorkerRecord]) -> list[Failure]:
        """Buffer the rows of ``records``; returns those the lake cannot represent (nothing of them
        is buffered)."""
        failures: list[Failure] = []
        events: list[EventValues] = []
        datas: list[dict[str, object]] = []
        rows: list[RowValues] = []
        counts: list[int] = []
        build = self.shape.build
        for rec in records:
            try:
                if self.native:
                    ev, data = telemetry_event(rec)
                    datas.append(data)
                else:
                    ev, built = build(rec)
                    if built is not None:
                        rows.extend(built)
                        counts.append(len(built))
            except Exception as exc:  # a record the lake cannot represent: dead-letter it
                failures.append(Failure.from_exception(rec, exc))
                continue
            events.append(ev)
        if not events:
            return failures
        ev_cols = _columns(events, self.shape.event_columns, self.types)
        if self.native:
            row_cols, n_rows = telemetry_row_columns(datas)
        elif self.shape.row_columns:
            row_cols, n_rows = _columns(rows, self.shape.row_columns, self.types), np.array(counts, np.int64)
        else:
            row_cols, n_rows = {}, np.ones(len(events), np.int64)
        row_cols = {k: v if pa.types.is_dictionary(v.type) else v.cast(self.types[k])
                    for k, v in row_cols.items() if k in self.types}
        self._append(Chunk(ev_cols, row_cols, n_rows))
        return failures

    def _append(self, chunk: Chunk) -> None:
        self._chunks.append(chunk)
        self._events += len(chunk.counts)
        self._rows += int(chunk.counts.sum())

    # --- selection ---------------------------------------------------------------------------
    def event_ids(self) -> Iterator[str]:
        for c in self._chunks:
            yield from c.events["event_id"].to_pylist()

    def _keep(self, keep_of: Iterable[npt.NDArray[np.bool_]]) -> int:
        """Keep, in every chunk, the events its mask marks (with their rows); returns rows dropped."""
        before = self._rows
        chunks = self._chunks
        self.clear()
        for c, keep in zip(chunks, keep_of, strict=True):
            if keep.all():
                self._append(c)
            elif keep.any():
                ev_idx = pa.array(np.flatnonzero(keep))
                row_keep = pa.array(np.repeat(keep, c.counts))
                self._append(Chunk({k: v.take(ev_idx) for k, v in c.events.items()},
                                   {k: v.filter(row_keep) for k, v in c.rows.items()}, c.counts[keep]))
        return before - self._rows

    def drop_below(self, floor: Floor) -> int:
        """Drop the events at offsets below ``floor`` of their partition; returns the rows dropped."""
        if not floor:
            return 0
        return self._keep(self._offsets_at_least(c, floor) for c in list(self._chunks))

    @staticmethod
    def _offsets_at_least(c: Chunk, floor: Floor) -> npt.NDArray[np.bool_]:
        topics = c.events["kafka_topic"].to_pylist()
        parts = c.events["kafka_partition"].to_pylist()
        need = np.fromiter((floor.get((t, p), -1) for t, p in zip(topics, parts, strict=True)), np.int64, len(topics))
        offsets: IntArray = c.events["kafka_offset"].to_numpy(zero_copy_only=False)
        return np.asarray(offsets >= need)

    def drop_partitions(self, gone: set[tuple[str, int]]) -> int:
        """Drop the events of the given (topic, partition)s; returns the rows dropped."""
        def keep(c: Chunk) -> npt.NDArray[np.bool_]:
            tp = zip(c.events["kafka_topic"].to_pylist(), c.events["kafka_partition"].to_pylist(), strict=True)
            return np.fromiter((x not in gone for x in tp), np.bool_, len(c.counts))

        return self._keep(keep(c) for c in list(self._chunks))

    # --- output ------------------------------------------------------------------------------
    def _merged(self) -> Chunk:
        cs = self._chunks
        if len(cs) == 1:
            return cs[0]
        events = {k: _concat([c.events[k] for c in cs]) for k in self.shape.event_columns if k in cs[0].events}
        rows = {k: _concat([c.rows[k] for c in cs]) for k in cs[0].rows}
        return Chunk(events, rows, np.concatenate([c.counts for c in cs]) if cs else np.zeros(0, np.int64))

    def _sorted(self, schema: pa.Schema, sort_by: tuple[str, ...], *, by_day: bool,
                plain: bool) -> tuple[pa.Table, IntArray]:
        """The buffered rows as a table of ``schema`` in sorted order, and each row's day.

        Unless ``plain``, string columns holding one value per event (``payload_rest``, ``event_id``
        ...) and ``field`` come as dictionary arrays (the same values, ``schema``'s value type): a
        row repeats its event's value by index instead of by copy, and Parquet writes them as its own
        dictionary encoding without hashing every row."""
        if not self._chunks:
            return schema.empty_table(), np.zeros(0, np.int64)
        m = self._merged()
        counts, events, rows = m.counts, m.events, m.rows
        day_us: IntArray = events["created_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        days = day_us // _DAY_US
        n_ev, n = len(counts), int(counts.sum())
        if (sort_by or by_day) and n_ev > 1:
            key_cols = {k: events[k] for k in sort_by}
            keys = [(k, "ascending", "at_end") for k in sort_by]
            if by_day:
                key_cols["__day"] = pa.array(days)
                keys.insert(0, ("__day", "ascending", "at_end"))
            order = pc.sort_indices(pa.table(key_cols), sort_keys=keys).to_numpy()
            if not np.array_equal(order, np.arange(n_ev)):
                events = {k: v.take(pa.array(order)) for k, v in events.items()}
                if rows:
                    starts = np.cumsum(counts) - counts
                    new_counts = counts[order]
                    row_idx = pa.array(np.repeat(starts[order] - (np.cumsum(new_counts) - new_counts), new_counts)
                                       + np.arange(n))
                    rows = {k: _dictionary(v).take(row_idx) if k == "field" and not plain else v.take(row_idx)
                            for k, v in rows.items()}
                counts, days = counts[order], days[order]
        if rows:
            expand = pa.array(np.repeat(np.arange(n_ev, dtype=np.int32), counts))
            events = {k: _repeat_by_index(v, expand) if _is_string(v) and not plain else v.take(expand)
                      for k, v in events.items()}
            if not plain and not pa.types.is_dictionary(rows["field"].type):
                rows["field"] = _dictionary(rows["field"])
        cols = {**events, **rows}
        fields, arrays = [], []
        for f in schema:
            a = cols.get(f.name)
            if a is None:
                a = pa.nulls(n, f.type)
            elif pa.types.is_dictionary(a.type):
                a = a if a.type.value_type == f.type else a.cast(pa.dictionary(pa.int32(), f.type))
                if plain:
                    a = a.cast(f.type)
            elif a.type != f.type:
                a = a.cast(f.type)
            fields.append(f.with_type(a.type))
            arrays.append(a)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata)), np.repeat(days, counts)

    def to_arrow(self, schema: pa.Schema, sort_by: tuple[str, ...] = ()) -> pa.Table:
        """The buffered rows as a table of ``schema`` (columns it has that the shape does not fill are
        null; columns the shape fills that it lacks are left out): in the order added or, with
        ``sort_by`` (per-event columns), stably sorted by those ascending, nulls last."""
        return self._sorted(schema, sort_by, by_day=False, plain=True)[0]

    def day_tables(self, schema: pa.Schema, sort_by: tuple[str, ...] = ()) -> list[tuple[int, pa.Table]]:
        """The buffered rows per ``day(created_at)`` (days since the epoch, ascending), each sorted by
        ``sort_by`` as ``to_arrow`` sorts them; string columns may come as dictionary arrays."""
        table, days = self._sorted(schema, sort_by, by_day=True, plain=False)
        if not table.num_rows:
            return []
        cuts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), table.num_rows]
        return [(int(days[a]), table.slice(a, b - a)) for a, b in zip(cuts, cuts[1:], strict=False)]
