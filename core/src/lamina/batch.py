"""Turning what callers pass to `write()` into validated columns, with errors that name the field.

Strict on purpose: a float where an int64 timestamp belongs, a str where bytes belong, a negative
timestamp, or columns of different lengths are refused before anything is buffered, so bad input
never reaches a part and never disturbs what is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lamina.errors import InvalidInputError
from lamina.format.rows import Rows, object_array
from lamina.format.tags import _TYPE_OF
from lamina.schema import BlockSchema, ColumnKind

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def rows_to_batch(
    schema: BlockSchema, rows: Iterable[Mapping[str, Any]], engine: str = ""
) -> dict[str, list[Any]]:
    """Row convenience: a list of dicts -> a columnar batch.

    A column no row has is left out of the batch (the engine's normalize may derive it, e.g. a
    measure's series ID; otherwise the batch check names it); one that only some rows lack is an
    error naming the first such row."""
    names = [c.name for c in schema.columns]
    out: dict[str, list[Any]] = {n: [] for n in names}
    tags = schema.tags_column
    absent: set[str] | None = None  # columns every row so far lacks
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInputError(
                "row", f"expected a mapping, got {type(row).__name__}", engine=engine, row=i
            )
        extra = set(row) - set(names)
        if extra:
            raise InvalidInputError(sorted(extra)[0], "unknown column", engine=engine, row=i)
        lacking = {n for n in names if n != tags and n not in row}
        if absent is None:
            absent = lacking
        elif lacking != absent:
            n = sorted(lacking ^ absent)[0]
            raise InvalidInputError(n, "missing", engine=engine, row=i if n in lacking else 0)
        for n in names:
            if n == tags:
                out[n].append(row.get(n) or {})
            elif n in row:
                out[n].append(row[n])
    for n in absent or ():
        del out[n]
    return out


def _int_column(name: str, values: Any, engine: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iu":
            if values.dtype.kind == "u" and values.size and values.max() > _I64_MAX:
                raise InvalidInputError(name, "value exceeds int64", engine=engine)
            return values.astype(np.int64, copy=False)
        if values.dtype != object:
            raise InvalidInputError(
                name, f"expected int64 values, got an array of {values.dtype}", engine=engine
            )
        values = values.tolist()
    values = list(values)
    for i, v in enumerate(values):
        if type(v) is not int and not isinstance(v, np.integer):
            raise InvalidInputError(
                name, f"expected an int, got {type(v).__name__} {v!r}", engine=engine, row=i
            )
        if not _I64_MIN <= int(v) <= _I64_MAX:
            raise InvalidInputError(name, f"{v} does not fit in int64", engine=engine, row=i)
    return np.asarray(values, dtype=np.int64) if values else np.empty(0, np.int64)


def _float_column(name: str, values: Any, engine: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    values = list(values)
    for i, v in enumerate(values):
        if type(v) not in (int, float) and not isinstance(v, np.number):
            raise InvalidInputError(
                name, f"expected a number, got {type(v).__name__} {v!r}", engine=engine, row=i
            )
    return np.asarray(values, dtype=np.float64) if values else np.empty(0, np.float64)


def _typed_objects(name: str, values: Any, tp: type, engine: str) -> np.ndarray:
    arr = values if isinstance(values, np.ndarray) and values.dtype == object else object_array(list(values))
    if set(map(type, arr)) - {tp}:
        for i, v in enumerate(arr):
            if type(v) is not tp:
                raise InvalidInputError(
                    name, f"expected {tp.__name__}, got {type(v).__name__} {v!r}", engine=engine, row=i
                )
    return arr


def _tags_column(name: str, values: Any, n: int, engine: str) -> dict[str, np.ndarray]:
    """Tags as one dict per row, or as a dict of tag -> column (None = absent)."""
    if isinstance(values, Mapping):
        cols = {}
        for t, col in values.items():
            arr = object_array(list(col))
            if len(arr) != n:
                raise InvalidInputError(f"{name}.{t}", f"has {len(arr)} values, expected {n}", engine=engine)
            cols[str(t)] = arr
    else:
        rows = list(values)
        if len(rows) != n:
            raise InvalidInputError(name, f"has {len(rows)} rows, expected {n}", engine=engine)
        keys: dict[str, None] = {}
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise InvalidInputError(
                    name, f"expected a mapping of tags, got {type(r).__name__}", engine=engine, row=i
                )
            keys.update(dict.fromkeys(r))
        cols = {t: object_array([r.get(t) for r in rows]) for t in keys}
    for t, arr in cols.items():
        if not isinstance(t, str) or not t or len(t) > 200:
            raise InvalidInputError(
                f"{name}", f"tag name {t!r} must be a non-empty string of at most 200 chars", engine=engine
            )
        types = set(map(type, arr))
        bad = types - _TAG_TYPES
        if bad:
            i = next(i for i, v in enumerate(arr) if type(v) in bad)
            raise InvalidInputError(
                f"{name}.{t}", f"unsupported tag value type {type(arr[i]).__name__}", engine=engine, row=i
            )
        if tuple in types:  # string arrays: every item a str
            for i, v in enumerate(arr):
                if type(v) is tuple and not all(type(x) is str for x in v):
                    raise InvalidInputError(
                        f"{name}.{t}", "a string array (tuple) may only hold str items", engine=engine, row=i
                    )
        if int in types and not _ints_fit(arr if len(types) == 1 else [v for v in arr if type(v) is int]):
            for i, v in enumerate(arr):
                if type(v) is int and not _I64_MIN <= v <= _I64_MAX:
                    raise InvalidInputError(f"{name}.{t}", f"{v} does not fit in int64", engine=engine, row=i)
    return cols


_TAG_TYPES = frozenset(_TYPE_OF) | {type(None)}


def _ints_fit(ints: Any) -> bool:
    """True when every Python int of `ints` fits int64 (one C-level conversion, no Python loop)."""
    try:
        (ints if isinstance(ints, np.ndarray) else object_array(ints)).astype(np.int64)
    except OverflowError:
        return False
    return True


def columns_from_batch(schema: BlockSchema, batch: Mapping[str, Any], engine: str = "") -> Rows:
    """Validate a columnar batch against the schema and convert it to `Rows`."""
    if not isinstance(batch, Mapping):
        raise InvalidInputError(
            "batch", f"expected a mapping of column -> values, got {type(batch).__name__}", engine=engine
        )
    names = {c.name for c in schema.columns}
    for k in batch:
        if k not in names:
            raise InvalidInputError(
                str(k), f"unknown column (columns: {', '.join(sorted(names))})", engine=engine
            )
    out: Rows = {}
    n: int | None = None
    for c in schema.columns:
        if c.kind is ColumnKind.TAGS:
            continue
        if c.name not in batch:
            raise InvalidInputError(c.name, "missing column", engine=engine)
        v = batch[c.name]
        if isinstance(v, str | bytes) or not hasattr(v, "__len__"):
            raise InvalidInputError(
                c.name, f"expected a sequence of values, got {type(v).__name__}", engine=engine
            )
        if c.kind is ColumnKind.INT64:
            col = _int_column(c.name, v, engine)
        elif c.kind is ColumnKind.FLOAT64:
            col = _float_column(c.name, v, engine)
        elif c.kind is ColumnKind.BYTES:
            col = _typed_objects(c.name, v, bytes, engine)
        else:
            col = _typed_objects(c.name, v, str, engine)
        if n is None:
            n = len(col)
        elif len(col) != n:
            raise InvalidInputError(
                c.name, f"has {len(col)} values but {schema.columns[0].name} has {n}", engine=engine
            )
        out[c.name] = col
    n = n or 0
    ts = out[schema.timestamp]
    if n and ts.min() < 0:
        i = int(np.argmin(ts))
        raise InvalidInputError(schema.timestamp, f"negative timestamp {int(ts[i])}", engine=engine, row=i)
    tags = schema.tags_column
    if tags is not None:
        out[tags] = _tags_column(tags, batch.get(tags, {}), n, engine) if tags in batch else {}
    return out
