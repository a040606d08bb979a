"""The telemetry table's row columns for a whole batch at once (the native path), equal to what the
Python builder (``consumers.lake.rows``, the reference) gives row by row.

No Python code runs per field: the batch's ``data`` objects are flattened into one list of keys and
one of values by C iteration (``itertools.chain`` over the decoded dicts), each value's JSON type and
each field's catalog kind (``schemas.fields``) become small integer codes, and the coercion of
``schemas.fields.coerce_value`` is applied per (type, kind) case with numpy and Arrow compute over all
rows of the batch. The cases handled that way are the ones real traffic carries:

* null, booleans, floats and 64-bit ints in every kind (ints in ``double`` fields keep ``value_raw``);
* strings in by-type kinds (enum, string, json, any, unknown fields) as ``value_string``;
* numeric strings (``"34.797"``, ``"80"``: plain ASCII digits, optional sign and fraction) in
  ``double`` / ``long`` / ``epoch_s`` fields, ``"true"``/``"false"`` in ``bool`` fields;
* objects (``Location``): ``value_json`` with sorted keys, ``latitude`` / ``longitude`` from numbers.

Every other row (a string in a numeric field that is not a plain number, a location string, string
coordinates, an int beyond 64 bits, a list) is handed to the reference functions themselves, so the output is the
reference's by construction there; ``tests/consumers/lake/test_lake_native.py`` checks both paths
agree on every column of every row.

A ``data`` object that is empty gives one row with ``field`` NULL, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import chain
from operator import methodcaller
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from consumers.lake.rows import _raw_unless_typed_tv
from plumbing.metrics import LAKE_VALUES_MISTYPED
from schemas.fields import FIELD_KINDS, coerce_value

__all__ = ["ROW_COLUMNS", "telemetry_row_columns"]

#: The telemetry row columns, in ``consumers.lake.rows.SHAPES["telemetry"].row_columns`` order.
ROW_COLUMNS = ("field", "value_double", "value_long", "value_bool", "value_string",
               "latitude", "longitude", "value_json", "value_raw")

# JSON type codes (types orjson decodes to); anything else is handed to the reference
_NULL, _BOOL, _INT, _FLOAT, _STR, _DICT, _OTHER = range(7)


class _TypeCodes(dict[type, int]):
    def __missing__(self, key: type) -> int:
        return _OTHER


_TYPE_CODE = _TypeCodes({type(None): _NULL, bool: _BOOL, int: _INT, float: _FLOAT, str: _STR, dict: _DICT})

# catalog kind codes: by JSON type alone (enum, string, json, any, a field the catalog does not know),
# double, integral (long, epoch_s), bool, location
_BY_TYPE, _DOUBLE, _INTEGRAL, _BOOLK, _LOCATION = range(5)
_KIND_CODE = {"double": _DOUBLE, "long": _INTEGRAL, "epoch_s": _INTEGRAL, "bool": _BOOLK, "location": _LOCATION}
_CATALOG = pa.array(list(FIELD_KINDS), pa.large_string())
#: kind code per catalog index, plus one more for "not in the catalog" (index_in gives null)
_KIND_OF = np.array([_KIND_CODE.get(k, _BY_TYPE) for k in FIELD_KINDS.values()] + [_BY_TYPE], np.int8)

_S = pa.large_string()
# plain numbers as Python's int() / float() read them and Arrow's casts give the same value (both
# round correctly); 15 integer digits keep every float integral test and int() conversion exact
_PLAIN_INT = r"^-?(0|[1-9][0-9]{0,17})$"
_PLAIN_DEC = r"^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,30})?$"
_TRUE_FALSE = r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"
_TWO63 = 2.0**63
_QUOTE, _NOTHING = pa.scalar('"', pa.large_string()), pa.scalar("", pa.large_string())
_EMPTY: dict[Any, Any] = {None: None}  # stands for an empty data object: one row, every column NULL
_SORTED_JSON = partial(orjson.dumps, option=orjson.OPT_SORT_KEYS)  # a C callable: no Python frame per object
_LATITUDE, _LONGITUDE = methodcaller("get", "latitude"), methodcaller("get", "longitude")

IntArray = npt.NDArray[np.int64]


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


class _CatalogIndex(dict[Any, int]):
    def __missing__(self, key: Any) -> int:
        return -1


_FIELD_INDEX = _CatalogIndex((name, i) for i, name in enumerate(FIELD_KINDS))


def _fields(keys: list[Any], n: int) -> tuple[pa.Array, npt.NDArray[np.int8]]:
    """The ``field`` column as a dictionary array over the catalog's names (plus the batch's other
    names), and each row's kind code."""
    idx = np.fromiter(map(_FIELD_INDEX.__getitem__, keys), np.int32, n)
    kind = _KIND_OF[idx]  # -1 (not in the catalog) is the last entry: by JSON type
    names = _CATALOG
    null = None
    if (idx < 0).any():
        other = np.flatnonzero(idx < 0)
        extra: dict[str, int] = {}
        for i in other.tolist():
            k = keys[i]
            if k is None:  # an empty data object's row
                continue
            k = k if type(k) is str else str(k)
            idx[i] = extra.setdefault(k, len(_CATALOG) + len(extra))
        if extra:
            names = pa.concat_arrays([_CATALOG, pa.array(list(extra), _S)])
        null = idx < 0
    return pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32(), mask=null), names), kind


class _Sparse:
    """Values for some rows of one column (row indices + values); the rest stay NULL."""

    def __init__(self, typ: pa.DataType) -> None:
        self.typ = typ
        self.idx: list[IntArray] = []
        self.vals: list[pa.Array] = []

    def put(self, idx: IntArray, vals: pa.Array | list[Any]) -> None:
        if len(idx):
            self.idx.append(idx)
            self.vals.append(vals if isinstance(vals, pa.Array) else pa.array(vals, self.typ))

    def array(self, n: int) -> pa.Array:
        if not self.idx:
            return pa.nulls(n, self.typ)
        vals = pa.concat_arrays([*(v.cast(self.typ) for v in self.vals), pa.nulls(1, self.typ)])
        pos = np.full(n, len(vals) - 1, np.int64)
        pos[np.concatenate(self.idx)] = np.arange(len(vals) - 1)
        return vals.take(pa.array(pos))


class _Dense:
    """A numeric column filled row by row position (numpy values + validity)."""

    def __init__(self, n: int, dtype: type, typ: pa.DataType) -> None:
        self.values: npt.NDArray[Any] = np.zeros(n, dtype)
        self.valid = np.zeros(n, np.bool_)
        self.typ = typ

    def put(self, idx: IntArray, vals: npt.ArrayLike) -> None:
        self.values[idx] = vals
        self.valid[idx] = True

    def array(self) -> pa.Array:
        if not self.valid.any():
            return pa.nulls(len(self.values), self.typ)
        return pa.array(self.values, self.typ, mask=~self.valid)


class _Columns:
    def __init__(self, n: int) -> None:
        self.n = n
        self.double = _Dense(n, np.float64, pa.float64())
        self.long = _Dense(n, np.int64, pa.int64())
        self.bool = _Dense(n, np.bool_, pa.bool_())
        self.lat = _Dense(n, np.float64, pa.float64())
        self.lon = _Dense(n, np.float64, pa.float64())
        self.string = _Sparse(_S)
        self.json = _Sparse(_S)
        self.raw = _Sparse(_S)

    def quoted_raw(self, idx: IntArray, strings: pa.Array) -> None:
        """``value_raw`` of strings that need no JSON escaping: the string in double quotes."""
        self.raw.put(idx, pc.binary_join_element_wise(_QUOTE, strings, _QUOTE, _NOTHING))


def telemetry_row_columns(datas: Sequence[dict[str, Any]]) -> tuple[dict[str, pa.Array], IntArray]:
    """The row columns (``ROW_COLUMNS``) of the ``data`` objects of a batch, rows in event order and,
    within an event, in the object's key order; and the number of rows of each event."""
    counts = np.fromiter(map(len, datas), np.int64, len(datas))
    if not counts.all():
        datas = [d if d else _EMPTY for d in datas]
        counts = np.maximum(counts, 1)
    n = int(counts.sum())
    keys = list(chain.from_iterable(datas))
    values = list(chain.from_iterable(map(dict.values, datas)))
    field, kind = _fields(keys, n)
    code = np.fromiter(map(_TYPE_CODE.__getitem__, map(type, values)), np.int8, n)
    vobj = np.fromiter(values, object, n)
    out = _Columns(n)
    fallback: list[IntArray] = [np.flatnonzero(code == _OTHER)]

    idx = np.flatnonzero(code == _BOOL)
    out.bool.put(idx, vobj[idx].astype(np.bool_))
    fallback.append(_ints(out, vobj, np.flatnonzero(code == _INT), kind))
    _floats(out, vobj, np.flatnonzero(code == _FLOAT), kind)
    fallback.append(_strings(out, vobj, np.flatnonzero(code == _STR), kind))
    fallback.append(_objects(out, vobj, np.flatnonzero(code == _DICT)))
    _reference_rows(out, keys, values, np.concatenate(fallback))
    _count_mistyped(keys, kind, code, out)
    cols = {
        "field": field, "value_double": out.double.array(), "value_long": out.long.array(),
        "value_bool": out.bool.array(), "value_string": out.string.array(n), "latitude": out.lat.array(),
        "longitude": out.lon.array(), "value_json": out.json.array(n), "value_raw": out.raw.array(n),
    }
    return cols, counts


def _count_mistyped(keys: list[Any], kind: npt.NDArray[np.int8], code: npt.NDArray[np.int8], out: _Columns) -> None:
    """``tpipe_lake_values_mistyped_total{field}``: the rule of ``schemas.fields.is_mistyped`` over the
    built columns (a non-null value of a typed kind that did not land in its kind's column)."""
    typed = (kind != _BY_TYPE) & (code != _NULL)
    if not typed.any():
        return
    numeric = ~(out.double.valid | out.long.valid)
    missing = np.where(kind == _BOOLK, ~out.bool.valid, np.where(kind == _LOCATION, ~out.lat.valid, numeric))
    rows = np.flatnonzero(typed & missing)
    for i in rows.tolist():
        k = keys[i]
        LAKE_VALUES_MISTYPED.labels(k if type(k) is str else str(k)).inc()


def _ints(out: _Columns, vobj: npt.NDArray[Any], idx: IntArray, kind: npt.NDArray[np.int8]) -> IntArray:
    """Ints: ``double`` fields take them as floats (keeping the digits in value_raw), ``bool`` fields
    0 and 1 as booleans (value_raw too), every other kind as longs. Returns the rows beyond 64 bits."""
    if not len(idx):
        return idx
    try:
        ints = vobj[idx].astype(np.int64)
    except OverflowError:
        big = np.fromiter((not -(2**63) <= v < 2**63 for v in vobj[idx]), np.bool_, len(idx))
        ints = vobj[idx[~big]].astype(np.int64)
        beyond, idx = idx[big], idx[~big]
    else:
        beyond = idx[:0]
    k = kind[idx]
    as_double = k == _DOUBLE
    as_bool = (k == _BOOLK) & ((ints == 0) | (ints == 1))
    as_long = ~(as_double | as_bool)
    out.long.put(idx[as_long], ints[as_long])
    out.double.put(idx[as_double], ints[as_double].astype(np.float64))
    out.bool.put(idx[as_bool], ints[as_bool] == 1)
    with_raw = as_double | as_bool
    out.raw.put(idx[with_raw], pc.cast(pa.array(ints[with_raw]), _S))
    return beyond


def _floats(out: _Columns, vobj: npt.NDArray[Any], idx: IntArray, kind: npt.NDArray[np.int8]) -> None:
    """Floats stay doubles, except in integral fields (a whole number in range: a long) and ``bool``
    fields (0 / 1: a boolean; else like an integral field); those keep value_raw."""
    if not len(idx):
        return
    f = vobj[idx].astype(np.float64)
    k = kind[idx]
    integral_kind = (k == _INTEGRAL) | (k == _BOOLK)
    whole = integral_kind & (f == np.floor(f)) & (f >= -_TWO63) & (f < _TWO63)
    as_bool = (k == _BOOLK) & ((f == 0.0) | (f == 1.0))
    as_long = whole & ~as_bool
    as_double = ~(as_bool | as_long)
    out.double.put(idx[as_double], f[as_double])
    out.long.put(idx[as_long], f[as_long].astype(np.int64))
    out.bool.put(idx[as_bool], f[as_bool] == 1.0)
    with_raw = as_bool | as_long
    out.raw.put(idx[with_raw], list(map(_json, vobj[idx[with_raw]])))


def _strings(out: _Columns, vobj: npt.NDArray[Any], idx: IntArray, kind: npt.NDArray[np.int8]) -> IntArray:
    """Strings: by-type kinds keep them; plain numbers in numeric fields and true/false in ``bool``
    fields are converted (value_raw keeps the quoted string). Returns the rows left to the reference."""
    if not len(idx):
        return idx
    k = kind[idx]
    by_type = k == _BY_TYPE
    out.string.put(idx[by_type], pa.array(vobj[idx[by_type]], _S))
    rest: IntArray = idx[~by_type]
    if not len(rest):
        return rest
    k = kind[rest]
    s = pa.array(vobj[rest], _S)
    plain_int = pc.match_substring_regex(s, _PLAIN_INT).to_numpy(zero_copy_only=False)
    plain_dec = pc.match_substring_regex(s, _PLAIN_DEC).to_numpy(zero_copy_only=False)
    true_false = pc.match_substring_regex(s, _TRUE_FALSE).to_numpy(zero_copy_only=False)
    # double fields: any plain number is a double
    dbl = (k == _DOUBLE) & plain_dec
    # integral fields: a plain int is a long; a plain decimal a long when whole, else a double
    intg = (k == _INTEGRAL) & plain_int
    dec = (k == _INTEGRAL) & plain_dec & ~plain_int
    tf = (k == _BOOLK) & true_false
    d_idx = np.flatnonzero(dbl | dec)
    f = pc.cast(s.take(pa.array(d_idx)), pa.float64()).to_numpy(zero_copy_only=False)
    whole = dec[d_idx] & (f == np.floor(f))
    out.double.put(rest[d_idx[~whole]], f[~whole])
    out.long.put(rest[d_idx[whole]], f[whole].astype(np.int64))
    i_idx = np.flatnonzero(intg)
    out.long.put(rest[i_idx], pc.cast(s.take(pa.array(i_idx)), pa.int64()).to_numpy(zero_copy_only=False))
    t_idx = np.flatnonzero(tf)
    out.bool.put(rest[t_idx], pc.equal(pc.ascii_lower(s.take(pa.array(t_idx))), "true").to_numpy(zero_copy_only=False))
    done = dbl | dec | intg | tf
    done_idx = np.flatnonzero(done)
    out.quoted_raw(rest[done_idx], s.take(pa.array(done_idx)))
    left: IntArray = rest[~done]
    return left


def _objects(out: _Columns, vobj: npt.NDArray[Any], idx: IntArray) -> IntArray:
    """Objects, in any kind: ``value_json`` is the object with sorted keys; ``latitude`` /
    ``longitude`` are set when both keys hold numbers (strings there go to the reference). An object
    gives itself back from ``value_json``: never a value_raw. Returns the rows left to the reference."""
    if not len(idx):
        return idx
    objs = vobj[idx].tolist()
    lat = np.fromiter(map(_TYPE_CODE.__getitem__, map(type, map(_LATITUDE, objs))), np.int8, len(objs))
    lon = np.fromiter(map(_TYPE_CODE.__getitem__, map(type, map(_LONGITUDE, objs))), np.int8, len(objs))
    lat_num, lon_num = (lat == _INT) | (lat == _FLOAT), (lon == _INT) | (lon == _FLOAT)
    number = lat_num & lon_num
    text = ((lat == _STR) | (lon == _STR)) & (lat_num | (lat == _STR)) & (lon_num | (lon == _STR))
    if text.any():
        objs = [o for o, t in zip(objs, text.tolist(), strict=True) if not t]
        number = number[~text]
    mine = idx[~text]
    out.json.put(mine, list(map(_SORTED_JSON, objs)))
    if number.any():
        both = [o for o, ok in zip(objs, number.tolist(), strict=True) if ok]
        out.lat.put(mine[number], np.fromiter(map(_LATITUDE, both), np.float64, len(both)))
        out.lon.put(mine[number], np.fromiter(map(_LONGITUDE, both), np.float64, len(both)))
    left: IntArray = idx[text]
    return left


def _reference_rows(out: _Columns, keys: list[Any], values: list[Any], idx: IntArray) -> None:
    """The reference functions for the rows the vectorised cases do not cover (objects included)."""
    if not len(idx):
        return
    idx = np.sort(idx)
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    for i in idx.tolist():
        value = values[i]
        key = keys[i]
        tv = coerce_value(key if type(key) is str else str(key), value)
        # an object or list gives back its own JSON from value_json: never a value_raw
        raw = None if type(value) is dict else _raw_unless_typed_tv(value, tv)
        for col, v in zip(cols, (*tv, raw), strict=True):
            col.append(v)
    vd, vl, vb, vs, lat, lon, vj, raw_ = cols
    for dense, vals in ((out.double, vd), (out.long, vl), (out.bool, vb), (out.lat, lat), (out.lon, lon)):
        some = np.fromiter((v is not None for v in vals), np.bool_, len(vals))
        if some.any():
            dense.put(idx[some], [v for v in vals if v is not None])
    for sparse, vals in ((out.string, vs), (out.json, vj), (out.raw, raw_)):
        some = np.fromiter((v is not None for v in vals), np.bool_, len(vals))
        if some.any():
            sparse.put(idx[some], [v for v in vals if v is not None])
