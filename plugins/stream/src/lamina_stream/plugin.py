"""Entry point of the stream engine (`lamina.engines: stream = lamina_stream.plugin`).

Declares what a stream stores; the core does every byte of I/O. Nothing here opens a file.

Write batches are columnar: `series` (per row, a mapping of entity tags, e.g. {"service": "api",
"host": "h1"}; or a mapping of entity tag -> column), `timestamp` (int ns), `element_id` (str),
and optional `tags` (per row a mapping, or a mapping of tag -> column). The engine derives the
series ID (`model.series_id`) and stores entity tags among the tags, so they filter and project
like any other tag. All elements are kept, duplicates included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lamina import API_VERSION, Engine, InvalidInputError, MergePolicyParams, hookimpl
from lamina_stream.demo import demo
from lamina_stream.model import VALUE_TYPES, series_id
from lamina_stream.query import scan
from lamina_stream.schema import LAYOUT, MAX_ELEMENT_ID, SCHEMA

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_COLUMNS = ("series", "timestamp", "element_id", "tags")


def _bad(field: str, msg: str, row: int | None = None) -> InvalidInputError:
    return InvalidInputError(field, msg, engine="stream", row=row)


def _is_sequence(v: Any) -> bool:
    return hasattr(v, "__len__") and not isinstance(v, str | bytes | Mapping)


def _per_row(name: str, value: Any, n: int) -> list[Mapping[str, Any]]:
    """A per-row list of mappings from either form (rows, or a mapping of columns)."""
    if isinstance(value, Mapping):
        cols = {}
        for t, col in value.items():
            if not _is_sequence(col):
                raise _bad(f"{name}.{t}", f"expected a sequence of values, got {type(col).__name__}")
            col = list(col)
            if len(col) != n:
                raise _bad(f"{name}.{t}", f"has {len(col)} values, expected {n}")
            cols[t] = col
        return [{t: c[i] for t, c in cols.items() if c[i] is not None} for i in range(n)]
    if not _is_sequence(value):
        raise _bad(name, f"expected a sequence of mappings, got {type(value).__name__}")
    rows = list(value)
    if len(rows) != n:
        raise _bad(name, f"has {len(rows)} rows, expected {n}")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise _bad(name, f"expected a mapping, got {type(r).__name__}", i)
    return rows


def _check_value(field: str, v: Any, row: int) -> None:
    if type(v) not in VALUE_TYPES:
        raise _bad(field, f"value must be str, int or bytes, got {type(v).__name__} {v!r}", row)
    if type(v) is int and not _I64_MIN <= v <= _I64_MAX:
        raise _bad(field, f"{v} does not fit in int64", row)


def normalize(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Stream batch -> the schema's columns (series_id, timestamp, element_id, tags), checking
    what the core cannot: entity tags present and typed, tag types, element ID lengths, and
    that an entity tag does not contradict a tag of the same name."""
    if not isinstance(batch, Mapping):
        raise _bad("batch", f"expected a mapping of column -> values, got {type(batch).__name__}")
    for k in batch:
        if k not in _COLUMNS:
            raise _bad(str(k), f"unknown column (columns: {', '.join(_COLUMNS)})")
    for k in ("series", "timestamp", "element_id"):
        if k not in batch:
            raise _bad(k, "missing column")
    ts = batch["timestamp"]
    if not _is_sequence(ts):
        raise _bad("timestamp", f"expected a sequence of values, got {type(ts).__name__}")
    n = len(ts)
    eids = batch["element_id"]
    if not _is_sequence(eids):
        raise _bad("element_id", f"expected a sequence of values, got {type(eids).__name__}")
    for i, e in enumerate(eids):
        if type(e) is str and not 0 < len(e) <= MAX_ELEMENT_ID:
            raise _bad("element_id", f"must be 1 to {MAX_ELEMENT_ID} characters, got {len(e)}", i)
    series = _per_row("series", batch["series"], n)
    tags = _per_row("tags", batch["tags"], n) if batch.get("tags") is not None else [{}] * n
    ids: list[int] = []
    merged: list[dict[str, Any]] = []
    cache: dict[tuple[Any, ...], int] = {}
    for i in range(n):
        ent, tg = series[i], tags[i]
        if not ent:
            raise _bad("series", "a series needs at least one entity tag", i)
        key = tuple(sorted((k, type(v).__name__, v) for k, v in ent.items() if _entity_ok(k, v, i)))
        sid = cache.get(key)
        if sid is None:
            sid = cache[key] = series_id(ent)
        ids.append(sid)
        for t, v in tg.items():
            if v is not None:
                _check_value(f"tags.{t}", v, i)
                if t in ent and not (type(ent[t]) is type(v) and ent[t] == v):
                    raise _bad(f"tags.{t}", f"{v!r} contradicts the entity tag {t}={ent[t]!r}", i)
        merged.append({**tg, **ent})
    return {"series_id": ids, "timestamp": ts, "element_id": eids, "tags": merged}


def _entity_ok(name: Any, v: Any, row: int) -> bool:
    if not isinstance(name, str) or not name:
        raise _bad("series", f"entity tag names must be non-empty str, got {name!r}", row)
    _check_value(f"series.{name}", v, row)
    return True


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
