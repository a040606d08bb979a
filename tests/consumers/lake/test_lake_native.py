"""The native telemetry builder (``consumers.lake.native``, a batch at once) gives exactly the rows of
the Python builder (``consumers.lake.rows``, the reference): every column of every row, value and
type (an int is not a float, -0.0 is not 0.0), ``value_raw`` and ``payload_rest`` included — over
the event corpus (every fixture, the bench bodies), the exact-replay stream, the edge values of
every catalog kind and generated odd values. Records reach both builders as the worker gets them:
envelope JSON decoded by the runtime's decoder."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.lake.arrow_buffer import ArrowBuffer
from consumers.lake.columns import ColumnBuffer
from consumers.lake.rows import SHAPES
from consumers.lake.tables import TABLES_BY_NAME
from consumers.runtime import WorkerRecord
from plumbing.metrics import LAKE_VALUES_MISTYPED
from schemas.envelope import Envelope
from schemas.envelope import Envelope as _Envelope
from schemas.fields import FIELDS
from schemas.parse import parse_body
from schemas.times import ms_to_iso
from tests.support.lake_corpus import _edge_envs, _fixture_envs, parse_stream
from tests.support.paths import FIXTURES

SCHEMA = TABLES_BY_NAME["telemetry"].arrow_schema
SORT = ("vin", "created_at")
MS = 1_767_225_600_000
DAY_MS = 86_400_000
decode = _Envelope.from_json


def _records(envs: list[Envelope], start: int = 0) -> list[WorkerRecord]:
    """The worker's view: each envelope's JSON decoded again, on partitions 0-2."""
    out = []
    for i, env in enumerate(envs):
        value = env.to_json()
        out.append(WorkerRecord(decode(value), f"t.{env.type}", i % 3, start + i, None, value))
    return out


def _canon(v: Any) -> tuple[str, str]:
    return type(v).__name__, repr(v)


def _assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.equals(want.schema)
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        g, w = got.column(name).to_pylist(), want.column(name).to_pylist()
        bad = [(i, g[i], w[i]) for i in range(len(w)) if _canon(g[i]) != _canon(w[i])]
        assert not bad, f"{name}: {len(bad)} rows differ, first {bad[:3]}"


def _mistyped() -> dict[str, float]:
    return {s.labels["field"]: s.value for m in LAKE_VALUES_MISTYPED.collect() for s in m.samples
            if s.name.endswith("_total")}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def _both(recs: list[WorkerRecord], batch: int = 500) -> tuple[ArrowBuffer, ArrowBuffer, ColumnBuffer]:
    native = ArrowBuffer("telemetry", SHAPES["telemetry"], native=True)
    python = ArrowBuffer("telemetry", SHAPES["telemetry"], native=False)
    reference = ColumnBuffer(SHAPES["telemetry"])
    m0 = _mistyped()
    for i in range(0, len(recs), batch):
        assert native.add_batch(recs[i : i + batch]) == []
    m1 = _mistyped()
    for i in range(0, len(recs), batch):
        assert python.add_batch(recs[i : i + batch]) == []
    m2 = _mistyped()
    assert _delta(m0, m1) == _delta(m1, m2), "the native builder counts mistyped values as the reference does"
    for rec in recs:
        reference.add(rec)
    return native, python, reference


def _check(recs: list[WorkerRecord], batch: int = 500) -> int:
    native, python, reference = _both(recs, batch)
    want = reference.to_arrow(SCHEMA, sort_by=SORT)
    _assert_same(python.to_arrow(SCHEMA, sort_by=SORT), want)
    _assert_same(native.to_arrow(SCHEMA, sort_by=SORT), want)
    _assert_same(native.to_arrow(SCHEMA), _reference_unsorted(recs))
    return int(want.num_rows)


def _reference_unsorted(recs: list[WorkerRecord]) -> pa.Table:
    buf = ColumnBuffer(SHAPES["telemetry"])
    for rec in recs:
        buf.add(rec)
    return buf.to_arrow(SCHEMA)


def _bench_envs(events: int = 600) -> list[Envelope]:
    """The bench bodies as ``bench.lake`` publishes them: distinct VINs and createdAt."""
    out: list[Envelope] = []
    bodies = [orjson.loads((FIXTURES / "bench" / f"data_{s}.json").read_bytes()) for s in ("0.5kb", "1.5kb", "3kb")]
    for i in range(events):
        obj = {**bodies[i % 3], "vin": f"5YJ3BENCH{i % 40:08d}", "createdAt": ms_to_iso(MS + i * 10)}
        out.extend(parse_body(orjson.dumps(obj), received_at_ms=MS))
    return out


def test_native_rows_are_the_reference_rows_on_the_corpus() -> None:
    t0 = (int(datetime.now(UTC).timestamp() * 1000) // 60_000) * 60_000
    envs = [e for e in [*_fixture_envs(), *_edge_envs(), *parse_stream(t0)] if e.type == "data"]
    envs += _bench_envs()
    rows = _check(_records(envs), batch=97)  # batches that cut through the corpus's kinds
    assert rows > 30_000


def _data(vin: str, ms: int, data: dict[str, Any], **extra: Any) -> Envelope:
    (env,) = parse_body(orjson.dumps({"createdAt": ms_to_iso(ms), "vin": vin, "data": data, **extra}), received_at_ms=ms)
    return env


# --- generated values -------------------------------------------------------------------------------
_KIND_FIELDS = sorted({spec.kind: name for name, spec in FIELDS.items()}.values())
_NUMERIC_TEXT = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?", fullmatch=True)
_ODD_TEXT = st.sampled_from([
    " 1 ", "+5", "1_000", ".5", "5.", "1e5", "inf", "-Infinity", "nan", "\u0663", "\u0661\u0662.\u0665", "true",
    "FALSE", " True ", "tRuE", "0", "1", "-0", "-0.0", "007", "0.50", "9223372036854775807", "9223372036854775808",
    "-9223372036854775809", "1e400", "(37.41 N, 122.14 W)", "37.5, -122.25", "", "x", 'e\u0301\n"\\', "\u2028", "\x7f",
])
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.sampled_from([0, 1, -1, 2**63, 2**63 - 1])
            | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1.0, 5e-324, 1e16, 2.0**63])
            | st.text(max_size=6) | _NUMERIC_TEXT | _ODD_TEXT)
_INTS = st.integers(-(2**63), 2**64 - 1)  # what JSON carries here (orjson: 64-bit signed or unsigned)
_COORD = _SCALARS | st.lists(_INTS, max_size=1) | st.dictionaries(st.text(max_size=2), _INTS, max_size=1)
_LOCATION = st.fixed_dictionaries({}, optional={"latitude": _COORD, "longitude": _COORD, "heading": _SCALARS})
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(string.ascii_letters, max_size=3), inner, max_size=3), max_leaves=6)
_VALUES = _SCALARS | _LOCATION | _JSON
_KEYS = st.sampled_from([*_KIND_FIELDS, "NotInTheCatalog", "Location", "Soc"]) | st.text(min_size=1, max_size=5)
_EVENT = st.tuples(st.dictionaries(_KEYS, _VALUES, max_size=10), st.booleans(), st.integers(0, 3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_EVENT, min_size=1, max_size=12))
def test_native_rows_are_the_reference_rows_on_generated_values(events: list[tuple[dict[str, Any], bool, int]]) -> None:
    envs = [_data(f"5YJ3GEN{v:010d}", MS + (i % 3) * DAY_MS + i, data, **({"isCache": True} if cache else {}))
            for i, (data, cache, v) in enumerate(events)]
    _check(_records(envs), batch=5)


def test_every_kind_meets_every_value_shape_in_one_batch() -> None:
    """Each kind's field with every value shape the vectorised cases split on, all in one batch."""
    shapes: list[Any] = [
        None, True, False, 0, 1, 2, -7, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 0.0, -0.0, 1.0, 0.5, 5.0, 2.0**63,
        -(2.0**63), 1e300, "34.797", "80", "-0", "5.0", "5.5", "true", "False", "x", "", "1e3", "12345678901234567",
        "123456789012345678", "(37.41 N, 122.14 W)", {"latitude": 1, "longitude": 2.5}, {"latitude": "1", "longitude": 2},
        {"latitude": True, "longitude": 2}, {"longitude": 2}, {"b": {"a": [1, "x"]}}, [1, 2.0, None], [],
    ]
    envs = [_data(f"5YJ3SHAPE{i:08d}", MS + i, {n: v for n in [*_KIND_FIELDS, "Unknown1"]}) for i, v in enumerate(shapes)]
    envs.append(_data("5YJ3SHAPE99999999", MS, {}))  # an empty data object: one row, field NULL
    assert _check(_records(envs)) == len(shapes) * (len(_KIND_FIELDS) + 1) + 1


def test_day_tables_are_the_partition_split_of_the_sorted_rows() -> None:
    """Per ``day(created_at)``, the rows ``Table.append`` would have written for that day (the rows
    sorted by (vin, created_at), then filtered to the day), with string columns as dictionaries."""
    envs = [_data(f"5YJ3DAYS{i % 5:09d}", MS + (i % 4) * DAY_MS - 7 + i, {"Soc": float(i), "Gear": "P"})
            for i in range(60)]
    native, _, reference = _both(_records(envs), batch=7)
    want = reference.to_arrow(SCHEMA, sort_by=SORT)
    days = native.day_tables(SCHEMA, sort_by=SORT)
    assert [d for d, _ in days] == sorted({(MS + k * DAY_MS - 7 + i) // DAY_MS for i, k in
                                          ((i, i % 4) for i in range(60))})
    for day, table in days:
        assert any(pa.types.is_dictionary(f.type) for f in table.schema)
        plain = pa.Table.from_arrays([c.cast(SCHEMA.field(c_name).type) for c_name, c in
                                      zip(table.column_names, table.columns, strict=True)], schema=SCHEMA)
        us = want.column("created_at").cast(pa.int64()).to_pylist()
        mask = pa.array([u // (DAY_MS * 1000) == day for u in us])
        _assert_same(plain, want.filter(mask))


def test_a_poison_record_in_a_batch_is_the_only_one_left_out() -> None:
    good = [_data("5YJ3POIS000000001", MS, {"Soc": 1.0}), _data("5YJ3POIS000000003", MS + 2, {"Gear": "D"})]
    bad = _data("5YJ3POIS000000002", MS + 1, {"Soc": 1.0})
    bad.payload["data"] = ["not", "an", "object"]
    recs = _records([good[0], bad, good[1]])
    buf = ArrowBuffer("telemetry", SHAPES["telemetry"])
    failures = buf.add_batch(recs)
    assert [f.record.offset for f in failures] == [1] and failures[0].error_type == "PoisonRecordError"
    assert (len(buf), buf.events, sorted(buf.event_ids())) == (2, 2, sorted(e.event_id for e in good))


@pytest.mark.parametrize("native", [True, False])
def test_dropping_offsets_and_partitions_keeps_what_the_reference_keeps(native: bool) -> None:
    envs = [_data(f"5YJ3DROP{i % 4:09d}", MS + i, {"Soc": float(i), "Gear": "P"} if i % 5 else {})
            for i in range(40)]
    recs = _records(envs)
    buf = ArrowBuffer("telemetry", SHAPES["telemetry"], native=native)
    for i in range(0, len(recs), 9):
        buf.add_batch(recs[i : i + 9])
    floor = {("t.data", 0): 12, ("t.data", 2): 1000}
    kept = [r for r in recs if r.partition == 1 or (r.partition == 0 and r.offset >= 12)]
    rows = {r.offset: max(1, len(r.envelope.payload["data"])) for r in recs}
    assert buf.drop_below(floor) == sum(n for o, n in rows.items() if o not in {r.offset for r in kept})
    _assert_same(buf.to_arrow(SCHEMA), _reference_unsorted(kept))
    assert buf.drop_partitions({("t.data", 1)}) == sum(rows[r.offset] for r in kept if r.partition == 1)
    _assert_same(buf.to_arrow(SCHEMA), _reference_unsorted([r for r in kept if r.partition == 0]))
