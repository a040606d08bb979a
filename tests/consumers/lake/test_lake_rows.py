"""Lake rows: the telemetry builder's inline value shapes agree with ``coerce_value``, and the
column buffer gives exactly the table that row dicts through ``pa.Table.from_pylist`` + ``sort_by``
give (every fixture, edge values, ties, null VINs, dropped offsets, older and newer table schemas)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from consumers.lake.columns import ColumnBuffer
from consumers.lake.rows import SHAPES, _raw_unless_typed_tv
from consumers.lake.tables import TABLES_BY_NAME
from consumers.runtime import PoisonRecordError, WorkerRecord
from schemas.envelope import Envelope
from schemas.fields import coerce_value
from schemas.topics import topic_for
from tests.support.lake_corpus import _data, _edge_envs, _fixture_envs
from tests.support.paths import FIXTURES as FIXTURES_DIR

FIXTURES = FIXTURES_DIR
TABLE_OF = {t: name for name, tdef in TABLES_BY_NAME.items() for t in tdef.event_types}
def _recs(envs: list[Envelope], start_offset: int = 0) -> list[WorkerRecord]:
    return [WorkerRecord(e, topic_for(e.type, "t"), i % 3, start_offset + i, None, e.to_json())
            for i, e in enumerate(envs)]


def test_inline_value_shapes_agree_with_coerce_value() -> None:
    envs = _edge_envs() + [e for e in _fixture_envs() if str(e.type) == "data"]
    checked = 0
    for rec in _recs(envs):
        _, rows = SHAPES["telemetry"].build(rec)
        data = rec.envelope.payload["data"]
        assert rows is not None
        if not data:
            assert rows == [(None,) * 9]
            continue
        want = []
        for name, value in data.items():
            tv = coerce_value(name, value)
            want.append((name, *tv, _raw_unless_typed_tv(value, tv)))
        assert rows == want
        # the same types too (True == 1 and 1 == 1.0 would hide a bool/int/float mix-up)
        assert [tuple(map(type, r)) for r in rows] == [tuple(map(type, r)) for r in want]
        checked += len(rows)
    assert checked > 400


def _reference(table: str, recs: list[WorkerRecord], schema: pa.Schema) -> pa.Table:
    rows = [r for rec in recs for r in SHAPES[table].dicts(rec)]
    return pa.Table.from_pylist(rows, schema=schema).sort_by([("vin", "ascending"), ("created_at", "ascending")])


def _buffer(table: str, recs: list[WorkerRecord]) -> ColumnBuffer:
    buf = ColumnBuffer(SHAPES[table])
    for rec in recs:
        buf.add(rec)
    return buf


@pytest.mark.parametrize("table", sorted(TABLES_BY_NAME))
def test_column_buffer_gives_the_table_row_dicts_give(table: str) -> None:
    envs = [e for e in _fixture_envs() + _edge_envs() if TABLE_OF[str(e.type)] == table]
    # ties (same VIN and created_at, other events) keep their order; a null VIN sorts last
    envs += [_data("5YJ3EDGE000000001", 1, {"Soc": float(i), "Gear": "D"}) for i in range(3)]
    envs += [_data(None, 5, {"Soc": 2.0})]
    envs = [e for e in envs if TABLE_OF[str(e.type)] == table]
    assert envs, table
    recs = _recs(list(reversed(envs)))
    schema = TABLES_BY_NAME[table].arrow_schema
    got = _buffer(table, recs).to_arrow(schema, sort_by=("vin", "created_at"))
    want = _reference(table, recs, schema)
    assert got.num_rows == want.num_rows > 0
    assert got.equals(want), (got.to_pylist()[:3], want.to_pylist()[:3])
    assert _buffer(table, recs).to_arrow(schema).equals(pa.Table.from_pylist(
        [r for rec in recs for r in SHAPES[table].dicts(rec)], schema=schema)), "unsorted: in the order added"


def test_drop_below_keeps_exactly_the_offsets_not_yet_stored() -> None:
    envs = [_data(f"5YJ3DROP{i % 4:09d}", i, {"Soc": float(i), "Gear": "P"}) for i in range(30)]
    recs = _recs(envs)  # partitions 0, 1, 2 round robin, offsets 0..29
    buf = _buffer("telemetry", recs)
    floor = {("t.data", 0): 12, ("t.data", 2): 1000}  # partition 1: nothing stored
    assert buf.drop_below(floor) == 2 * len([r for r in recs if (r.partition == 0 and r.offset < 12)
                                             or r.partition == 2])
    kept = [r for r in recs if r.partition == 1 or (r.partition == 0 and r.offset >= 12)]
    schema = TABLES_BY_NAME["telemetry"].arrow_schema
    assert buf.to_arrow(schema).equals(_buffer("telemetry", kept).to_arrow(schema))
    assert sorted(buf.event_ids()) == sorted(r.envelope.event_id for r in kept)
    assert buf.drop_below({}) == 0 and len(buf) == 2 * len(kept)
    assert buf.drop_below({("t.data", p): 10**6 for p in range(3)}) == 2 * len(kept)
    empty = buf.to_arrow(schema, sort_by=("vin", "created_at"))  # what a commit of offsets alone writes
    assert empty.num_rows == 0 and empty.schema.equals(schema) and list(buf.event_ids()) == []


def test_a_poison_record_adds_nothing() -> None:
    good = _recs([_data("5YJ3POIS000000001", 0, {"Soc": 1.0})])[0]
    bad_env = _data("5YJ3POIS000000002", 1, {"Soc": 1.0})
    bad_env.payload["data"] = ["not", "an", "object"]
    bad = _recs([bad_env], start_offset=1)[0]
    buf = ColumnBuffer(SHAPES["telemetry"])
    buf.add(good)
    with pytest.raises(PoisonRecordError):
        buf.add(bad)
    assert (len(buf), buf.events, list(buf.event_ids())) == (1, 1, [good.envelope.event_id])


def test_older_and_newer_table_schemas() -> None:
    """A column the table lacks is left out; a column the shape does not fill is null."""
    recs = _recs([_data("5YJ3SCHM000000001", 0, {"Soc": 1.0, "Gear": "P"})])
    full = TABLES_BY_NAME["telemetry"].arrow_schema
    older = pa.schema([f for f in full if f.name not in ("payload_rest", "value_raw")])
    newer = full.append(pa.field("added_later", pa.large_string()))
    got_old = _buffer("telemetry", recs).to_arrow(older)
    assert got_old.schema.equals(older) and got_old.equals(_reference("telemetry", recs, older))
    got_new = _buffer("telemetry", recs).to_arrow(newer)
    assert got_new.column("added_later").null_count == 2
    assert got_new.drop_columns(["added_later"]).equals(_reference("telemetry", recs, full))
