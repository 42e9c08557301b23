"""Entry point of the stream engine (`lamina.engines: stream = lamina_stream.plugin`).

Declares what a stream stores; the core does every byte of I/O. Nothing here opens a file.

Write batches are columnar: `series` (per row, a mapping of entity tags, e.g. {"service": "api",
"host": "h1"}; or a mapping of entity tag -> column), `timestamp` (int ns), `element_id` (str),
and optional `tags` (per row a mapping, or a mapping of tag -> column; values str, int, bytes or
a string array given as a list or tuple of str, read back as a tuple). The engine derives the
series ID (`model.series_id`) and stores entity tags among the tags, so they filter and project
like any other tag. All elements are kept, duplicates included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lamina import API_VERSION, Engine, InvalidInputError, MergePolicyParams, hookimpl
from lamina.batch import check_tag_name, first_non_utf8, is_sequence, unknown_column, utf8_problem
from lamina_stream.demo import demo
from lamina_stream.model import VALUE_TYPES, series_id
from lamina_stream.query import scan
from lamina_stream.schema import LAYOUT, MAX_ELEMENT_ID, SCHEMA

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_COLUMNS = ("series", "timestamp", "element_id", "tags")


def _bad(field: str, msg: str, row: int | None = None) -> InvalidInputError:
    return InvalidInputError(field, msg, engine="stream", row=row)


def _columns(name: str, value: Any, n: int) -> dict[str, list[Any]]:
    """Columns (tag -> list, None = absent) from either form: a sequence of per-row mappings, or
    a mapping of tag -> column. Columnar from here on: checks below run at C speed per column."""
    if isinstance(value, Mapping):
        cols = {}
        for t, col in value.items():
            if not is_sequence(col):
                raise _bad(f"{name}.{t}", f"expected a sequence of values, got {type(col).__name__}")
            col = list(col)
            if len(col) != n:
                raise _bad(f"{name}.{t}", f"has {len(col)} values, expected {n}")
            cols[t] = col
        return cols
    if not is_sequence(value):
        raise _bad(name, f"expected a sequence of mappings, got {type(value).__name__}")
    rows = list(value)
    if len(rows) != n:
        raise _bad(name, f"has {len(rows)} rows, expected {n}")
    if not all(isinstance(r, Mapping) for r in rows):
        i = next(i for i, r in enumerate(rows) if not isinstance(r, Mapping))
        raise _bad(name, f"expected a mapping, got {type(rows[i]).__name__}", i)
    keys: dict[Any, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return {t: [r.get(t) for r in rows] for t in keys}


_ALLOWED = frozenset(VALUE_TYPES) | {type(None)}


def _check_column(field: str, col: list[Any], arrays: bool = False) -> None:
    """Every value str, int (int64) or bytes (None = absent); with `arrays`, also string arrays
    (a list or tuple of str), which are turned into tuples in place (the core's array type)."""
    types = set(map(type, col))
    if arrays and types & {list, tuple}:
        for i, v in enumerate(col):
            if type(v) in (list, tuple):
                if not all(type(x) is str for x in v):
                    raise _bad(field, "a string array may only hold str items", i)
                if first_non_utf8(list(v)) is not None:
                    raise _bad(field, f"string array {v!r}: an item is not valid UTF-8", i)
                col[i] = tuple(v)
        types = set(map(type, col)) - {tuple}
    if not types <= _ALLOWED:
        i = next(
            i for i, v in enumerate(col) if type(v) not in _ALLOWED and not (arrays and type(v) is tuple)
        )
        what = "str, int, bytes or a list of str" if arrays else "str, int or bytes"
        raise _bad(field, f"value must be {what}, got {type(col[i]).__name__} {col[i]!r}", i)
    if str in types:  # the series hash and every encoder store text as UTF-8
        strs = [v for v in col if type(v) is str]
        if first_non_utf8(strs) is not None:
            i = next(i for i, v in enumerate(col) if type(v) is str and utf8_problem(v) is not None)
            raise _bad(field, f"{col[i]!r} {utf8_problem(col[i])}", i)
    if int in types:
        ints = [v for v in col if type(v) is int]
        if min(ints) < _I64_MIN or max(ints) > _I64_MAX:
            i = next(i for i, v in enumerate(col) if type(v) is int and not _I64_MIN <= v <= _I64_MAX)
            raise _bad(field, f"{col[i]} does not fit in int64", i)


def _check_name(field: str, name: Any) -> None:
    """A tag name as the core stores it (entity tags are stored as tags too, and hashed)."""
    check_tag_name(field, name, engine="stream")


def _series_ids(entity: dict[str, list[Any]], n: int) -> list[int]:
    """Series ID per row: hashed once per distinct entity (few series, many rows)."""
    names = sorted(entity)
    keys = list(zip(*(entity[t] for t in names), strict=True)) if names else [()] * n
    ids: dict[tuple[Any, ...], int] = {}
    for key in dict.fromkeys(keys):
        ent = {t: v for t, v in zip(names, key, strict=True) if v is not None}
        if not ent:
            i = keys.index(key)
            raise _bad("series", "a series needs at least one entity tag", i)
        ids[key] = series_id(ent)
    return list(map(ids.__getitem__, keys))


def normalize(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Stream batch -> the schema's columns (series_id, timestamp, element_id, tags), checking
    what the core cannot: entity tags present and typed, tag types, element ID lengths, and
    that an entity tag does not contradict a tag of the same name."""
    if not isinstance(batch, Mapping):
        raise _bad("batch", f"expected a mapping of column -> values, got {type(batch).__name__}")
    for k in batch:
        if k not in _COLUMNS:
            raise unknown_column(k, _COLUMNS, "stream")
    for k in ("series", "timestamp", "element_id"):
        if k not in batch:
            raise _bad(k, "missing column")
    ts = batch["timestamp"]
    if not is_sequence(ts):
        raise _bad("timestamp", f"expected a sequence of values, got {type(ts).__name__}")
    n = len(ts)
    eids = batch["element_id"]
    if not is_sequence(eids):
        raise _bad("element_id", f"expected a sequence of values, got {type(eids).__name__}")
    if n and set(map(type, eids)) == {str}:  # other types: the core names the row
        lens = list(map(len, eids))
        if min(lens) == 0 or max(lens) > MAX_ELEMENT_ID:
            i = next(i for i, x in enumerate(lens) if not 0 < x <= MAX_ELEMENT_ID)
            raise _bad("element_id", f"must be 1 to {MAX_ELEMENT_ID} characters, got {lens[i]}", i)
    entity = _columns("series", batch["series"], n)
    for t, col in entity.items():
        _check_name("series", t)
        _check_column(f"series.{t}", col)
    ids = _series_ids(entity, n)
    tags = _columns("tags", batch["tags"], n) if batch.get("tags") is not None else {}
    for t, col in tags.items():
        _check_name("tags", t)
        _check_column(f"tags.{t}", col, arrays=True)
    merged = dict(tags)
    for t, ecol in entity.items():
        tcol = tags.get(t)
        if tcol is None:
            merged[t] = ecol
            continue
        for i, (e, v) in enumerate(zip(ecol, tcol, strict=True)):
            if e is not None and v is not None and not (type(e) is type(v) and e == v):
                raise _bad(f"tags.{t}", f"{v!r} contradicts the entity tag {t}={e!r}", i)
        merged[t] = [v if e is None else e for e, v in zip(ecol, tcol, strict=True)]
    return {"series_id": ids, "timestamp": ts, "element_id": eids, "tags": merged}


ENGINE = Engine(
    name="stream",
    api_version=API_VERSION,
    schema=SCHEMA,
    layout=LAYOUT,
    normalize=normalize,
    query=scan,
    merge_policy=MergePolicyParams(max_parts=15, min_multiplier=1.7),
    demo=demo,
    description="Logs and events per series; time range + tag filters (blocks skipped by tag blooms)",
)


@hookimpl
def lamina_register_engines(register: Callable[[Engine], None]) -> None:
    register(ENGINE)
