"""Measure queries over core-provided part readers.

A query selects series (by entity values or series IDs, or all) and a time range, reads the
matching rows of every part granule by granule (pruned by the granules' time bounds and key
ranges), applies the equal-key rule across everything it read (parts not merged yet and unflushed
rows included), then filters by tags, and returns points or aggregates.

Deduplication comes before the tag filter on purpose: a point rewritten with new tags must not
reappear through its superseded version's old tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lamina import InvalidInputError, PartReader, QueryContext
from lamina.query import check_limit, check_order, check_tag_conditions, check_text_arg, check_time_bound
from lamina_measure.model import AggregateResult, MeasureResult
from lamina_measure.options import ENGINE_NAME, MeasureOptions
from lamina_measure.rule import winners
from lamina_measure.series import entity_value_problem, series_id

AGGREGATES = ("count", "sum", "min", "max", "avg")
_NUMERIC = ("int64", "float64")
_DTYPES = {"int64": np.int64, "float64": np.float64, "string": object, "bytes": object}
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _bad(field: str, problem: str) -> InvalidInputError:
    return InvalidInputError(field, problem, engine=ENGINE_NAME)


def _names(name: str, v: Any, known: Sequence[str] | None) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str | bytes) or not isinstance(v, list | tuple):
        raise _bad(name, f"expected a list of names, got {type(v).__name__}")
    for i, x in enumerate(v):
        check_text_arg(f"{name}[{i}]", x, engine=ENGINE_NAME)
        if known is not None and x not in known:
            raise _bad(f"{name}[{i}]", f"{x!r} is not a field of this measure (fields: {', '.join(known)})")
    return list(dict.fromkeys(v))


def resolve_series(opts: MeasureOptions, entity: Any, entities: Any, series_ids: Any) -> np.ndarray | None:
    """Sorted unique series IDs asked for, or None for every series."""
    given = [
        n
        for n, v in (("entity", entity), ("entities", entities), ("series_ids", series_ids))
        if v is not None
    ]
    if len(given) > 1:
        raise _bad(given[1], f"give one of entity, entities or series_ids, not {' and '.join(given)}")
    if entity is not None:
        entities = [entity]
        where = "entity"
    else:
        where = "entities"
    ids: list[int] = []
    if entities is not None:
        if isinstance(entities, Mapping) or not isinstance(entities, Sequence):
            raise _bad(
                where, f"expected a list of mappings of entity tag -> value, got {type(entities).__name__}"
            )
        for i, e in enumerate(entities):
            label = where if where == "entity" else f"entities[{i}]"
            if not isinstance(e, Mapping):
                raise _bad(label, f"expected a mapping of entity tag -> value, got {type(e).__name__}")
            extra = set(e) - set(opts.entity)
            if extra:
                raise _bad(
                    f"{label}.{sorted(map(str, extra))[0]}",
                    f"not an entity tag (entity: {list(opts.entity)})",
                )
            values = []
            for t in opts.entity:
                if t not in e:
                    raise _bad(
                        f"{label}.{t}", "missing: every entity tag names the series (filter by tags= instead)"
                    )
                problem = entity_value_problem(e[t])
                if problem is not None:
                    raise _bad(f"{label}.{t}", problem)
                values.append(e[t])
            ids.append(series_id(values))
    elif series_ids is not None:
        if isinstance(series_ids, str | bytes) or not hasattr(series_ids, "__iter__"):
            raise _bad("series_ids", f"expected a sequence of ints, got {type(series_ids).__name__}")
        for i, s in enumerate(series_ids):
            if (
                isinstance(s, bool)
                or not isinstance(s, int | np.integer)
                or not _I64_MIN <= int(s) <= _I64_MAX
            ):
                raise _bad(f"series_ids[{i}]", f"expected an int64 series ID, got {s!r}")
            ids.append(int(s))
    else:
        return None
    return np.unique(np.asarray(ids, dtype=np.int64))


def _key_to_int(key: bytes) -> int:
    """Inverse of the core's INT64 block-key encoding (big-endian, sign bit flipped)."""
    return int.from_bytes(key, "big") - (1 << 63)


def _tag_predicate(name: str, want: Any) -> Callable[[Any], bool]:
    if callable(want):
        return lambda v: v is not None and bool(want(v))
    if isinstance(want, list | tuple | set | frozenset):
        try:
            allowed = {(type(a), a) for a in want}
        except TypeError:  # an unhashable value can never equal a tag value
            raise _bad(f"tags.{name}", f"a list of tag values must hold scalars, got {want!r}") from None
        return lambda v: (type(v), v) in allowed
    if isinstance(want, dict | np.ndarray):
        raise _bad(
            f"tags.{name}", f"expected a value, a list of values or a predicate, got {type(want).__name__}"
        )
    return lambda v: type(v) is type(want) and v == want


class _Scan:
    """Rows selected from every part in read order (= write order: oldest data first): their
    series, timestamps and versions, and the tags a filter needs. Field values and projected tags
    are fetched last (`fetch`), for the rows that survive deduplication, tag filters and the limit
    only: a selective query never reads the field blocks or tag values of rows it drops."""

    def __init__(self, filter_tags: list[str]) -> None:
        self.filter_tags = filter_tags
        #: every tag of the parts read, for a query projecting all tags
        self.all_tags: set[str] = set()
        self.refs: list[tuple[PartReader, int, np.ndarray]] = []
        self.series: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []
        self.version: list[np.ndarray] = []
        self.tvals: dict[str, list[np.ndarray]] = {t: [] for t in filter_tags}

    def add_granule(self, part: PartReader, g: int, sids: np.ndarray | None, lo: int, hi: int) -> None:
        s = part.granule_column(g, "series")
        t = part.granule_column(g, "timestamp")
        m = (t >= lo) & (t < hi)
        if sids is not None:
            m &= np.isin(s, sids)
        rows = np.flatnonzero(m)
        if not len(rows):
            return
        self.refs.append((part, g, rows))
        self.series.append(s[rows])
        self.ts.append(t[rows])
        self.version.append(part.granule_column(g, "version")[rows])
        for tag in self.filter_tags:
            self.tvals[tag].append(_tag(part, g, tag, rows))

    def fetch(
        self, sel: np.ndarray, fields: list[str], tags: list[str], dtypes: dict[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Values of `fields` and `tags` for the rows at `sel` (ascending indices into the scan
        order)."""
        fpieces: dict[str, list[np.ndarray]] = {f: [] for f in fields}
        tpieces: dict[str, list[np.ndarray]] = {t: [] for t in tags}
        off = 0
        for part, g, rows in self.refs:
            a, b = np.searchsorted(sel, [off, off + len(rows)])
            if a < b:
                want = rows[sel[a:b] - off]
                if fields:
                    got = _block_fields(part, g, want, fields)
                    for f in fields:
                        fpieces[f].append(got[f])
                for t in tags:
                    tpieces[t].append(_tag(part, g, t, want))
            off += len(rows)
        return (
            {f: _cat(fpieces[f], dtypes[f]) for f in fields},
            {t: _cat(tpieces[t], object) for t in tags},
        )


def _tag(part: PartReader, g: int, tag: str, rows: np.ndarray) -> np.ndarray:
    col = part.granule_tag(g, tag, rows=rows)
    return np.full(len(rows), None, dtype=object) if col is None else col  # part lacks the tag


def _block_fields(part: PartReader, g: int, rows: np.ndarray, fields: list[str]) -> dict[str, np.ndarray]:
    """Field values of `rows` (granule row indices, ascending), read from the blocks holding them
    only: each block's rows are one run."""
    blocks = part.granule_blocks(g)
    row_lo = part.blocks.row_lo[blocks.start : blocks.stop]
    which = np.searchsorted(row_lo, rows, side="right") - 1
    cuts = np.flatnonzero(np.diff(which)) + 1
    if len(cuts) >= 1 and 4 * (len(cuts) + 1) >= len(blocks):
        # a quarter of the granule's blocks or more: one read and no per-block calls
        whole = part.granule_block_columns(g, fields)
        return {f: whole[f][rows] for f in fields}
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), len(rows)]
    pieces: dict[str, list[np.ndarray]] = {f: [] for f in fields}
    for a, b in zip(starts, ends, strict=True):
        k = int(which[a])
        data = part.read_block(blocks.start + k, fields, [])
        local = rows[a:b] - int(row_lo[k])
        for f in fields:
            pieces[f].append(data[f][local])
    return {f: pieces[f][0] if len(pieces[f]) == 1 else np.concatenate(pieces[f]) for f in fields}


def _cat(chunks: list[np.ndarray], dtype: Any) -> np.ndarray:
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)


class _Selected:
    """The surviving points of a scan (after highest-version-wins): series, timestamps, versions
    and filter tags at hand, fields and other tags fetched on demand."""

    def __init__(self, scan: _Scan, opts: MeasureOptions) -> None:
        series = _cat(scan.series, np.int64)
        ts = _cat(scan.ts, np.int64)
        version = _cat(scan.version, np.int64)
        # Every part is already deduplicated (the rule runs when a part is built: flush, merge,
        # memory view of the buffer), so points from a single part need no second pass.
        if len({id(part) for part, _, _ in scan.refs}) <= 1:
            self._keep: np.ndarray | None = None
            self.series, self.ts, self.version = series, ts, version
            self.tags = {t: _cat(scan.tvals[t], object) for t in scan.filter_tags}
        else:
            self._keep = keep = winners(series, ts, version)
            self.series, self.ts, self.version = series[keep], ts[keep], version[keep]
            self.tags = {t: _cat(scan.tvals[t], object)[keep] for t in scan.filter_tags}
        self._scan = scan
        self._dtypes = {f: _DTYPES[t] for f, t in opts.fields}

    def __len__(self) -> int:
        return len(self.ts)

    def fetch(
        self, idx: np.ndarray, fields: list[str], tags: list[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Fields and tags of the points at `idx` (any order, no repeats), in that order."""
        if not fields and not tags:
            return {}, {}
        asc = np.sort(idx)
        f, t = self._scan.fetch(asc if self._keep is None else self._keep[asc], fields, tags, self._dtypes)
        if len(idx) > 1 and not np.array_equal(asc, idx):
            back = np.searchsorted(asc, idx)
            f = {k: v[back] for k, v in f.items()}
            t = {k: v[back] for k, v in t.items()}
        return f, t


def _scan(
    ctx: QueryContext,
    sids: np.ndarray | None,
    start: int | None,
    end: int | None,
    filter_tags: list[str],
) -> _Scan:
    """The rows in range of the selected series, read granule by granule from every part that
    may hold some (pruned by time bounds and key ranges), with the tags a filter needs."""
    lo = -(2**63) if start is None else start
    hi = 2**64 if end is None else end
    parts = list(ctx.parts(start, end))
    got = _Scan(filter_tags)
    if sids is not None and not len(sids):
        parts = []
    for part in parts:
        grans = part.index.granules
        cand = (grans["max_ts"] >= lo) & (grans["min_ts"] < hi)
        if sids is not None:
            first = np.fromiter(map(_key_to_int, part.index.first_keys), dtype=np.int64, count=len(grans))
            last = np.fromiter(map(_key_to_int, part.index.last_keys), dtype=np.int64, count=len(grans))
            cand &= np.searchsorted(sids, first, side="left") < np.searchsorted(sids, last, side="right")
        hits = np.flatnonzero(cand).tolist()
        if hits:
            got.all_tags.update(part.meta.tags)
        for g in hits:
            got.add_granule(part, g, sids, lo, hi)
    return got


def run(
    opts: MeasureOptions,
    ctx: QueryContext,
    *,
    entity: Mapping[str, Any] | None = None,
    entities: Sequence[Mapping[str, Any]] | None = None,
    series_ids: Sequence[int] | None = None,
    start: int | None = None,
    end: int | None = None,
    tags: Mapping[str, Any] | None = None,
    fields: Sequence[str] | None = None,
    tag_projection: Sequence[str] | None = None,
    order: str = "asc",
    limit: int | None = None,
    agg: str | None = None,
    field: str | None = None,
    by_series: bool = False,
) -> MeasureResult | AggregateResult:
    """Points (or an aggregate) of the selected series with start <= timestamp < end.

    Series: `entity={tag: value, ...}` (every entity tag), `entities=[...]`, `series_ids=[...]`,
    or none of them for every series. `tags={name: value | [values] | predicate}` keeps points
    whose tags match every condition (equality is type-strict: 1 and "1" differ). Points come
    ordered by timestamp, then series ID (`order="desc"` reverses), at most `limit` of them, with
    the `fields` (default all) and `tag_projection` (default all tags) asked for.
    `agg="count"|"sum"|"min"|"max"|"avg"` over `field` (count needs none) returns an
    `AggregateResult`: across series, or per series with `by_series=True`. Sums of an int64
    field are int64 (numpy arithmetic: they wrap past 2**63); avg is float64; min, max and avg
    of no points are None.
    """
    start = check_time_bound("start", start, engine=ENGINE_NAME)
    end = check_time_bound("end", end, engine=ENGINE_NAME)
    check_order(order, engine=ENGINE_NAME)
    check_limit(limit, engine=ENGINE_NAME)
    conds = {k: _tag_predicate(k, v) for k, v in check_tag_conditions(tags, engine=ENGINE_NAME).items()}
    sids = resolve_series(opts, entity, entities, series_ids)
    if type(by_series) is not bool:  # before any truth test: an array has no truth value
        raise _bad("by_series", f"must be a bool, got {by_series!r}")
    if agg is not None:
        if fields is not None or tag_projection is not None or limit is not None or order != "asc":
            raise _bad("agg", "an aggregate takes no fields, tag_projection, limit or order")
        return _aggregate(ctx, opts, sids, start, end, conds, agg, field, by_series)
    if field is not None or by_series:
        raise _bad("field" if field is not None else "by_series", "only meaningful with agg=")
    want_fields = _names("fields", fields, opts.field_names)
    want_fields = opts.field_names if want_fields is None else want_fields
    proj = _names("tag_projection", tag_projection, None)
    sel = _Selected(_scan(ctx, sids, start, end, list(conds)), opts)
    idx = np.flatnonzero(_filter(sel.tags, conds, len(sel)))
    idx = idx[np.lexsort((sel.series[idx], sel.ts[idx]))]
    if order == "desc":
        idx = idx[::-1]
    if limit is not None:
        idx = idx[:limit]
    out_tags = sorted(sel._scan.all_tags | set(conds)) if proj is None else proj
    fvals, tvals = sel.fetch(idx, want_fields, out_tags)
    return MeasureResult(sel.series[idx], sel.ts[idx], sel.version[idx], fvals, tvals)


def _filter(tvals: dict[str, np.ndarray], conds: dict[str, Callable[[Any], bool]], n: int) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    for name, pred in conds.items():
        col = tvals[name]
        cache: dict[tuple[type, Any], bool] = {}
        hit = np.empty(n, dtype=bool)
        for i, v in enumerate(col.tolist()):
            try:
                key = (type(v), v)
                r = cache.get(key)
                if r is None:
                    r = cache[key] = bool(pred(v))
            except TypeError:  # unhashable cannot happen for tag values; be safe anyway
                r = bool(pred(v))
            hit[i] = r
        mask &= hit
    return mask


def _aggregate(
    ctx: QueryContext,
    opts: MeasureOptions,
    sids: np.ndarray | None,
    start: int | None,
    end: int | None,
    conds: dict[str, Callable[[Any], bool]],
    agg: str,
    field: str | None,
    by_series: bool,
) -> AggregateResult:
    if type(agg) is not str or agg not in AGGREGATES:  # type first: an array compares elementwise
        raise _bad("agg", f"must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    if field is None and agg != "count":
        raise _bad("field", f"{agg} needs a field")
    if field is not None:
        if type(field) is not str or field not in opts.field_names:
            raise _bad(
                "field", f"{field!r} is not a field of this measure (fields: {', '.join(opts.field_names)})"
            )
        if opts.field_type(field) not in _NUMERIC and agg != "count":
            raise _bad("field", f"{agg} needs a numeric field; {field!r} is {opts.field_type(field)}")
    sel = _Selected(_scan(ctx, sids, start, end, list(conds)), opts)
    idx = np.flatnonzero(_filter(sel.tags, conds, len(sel)))
    vals = sel.fetch(idx, [field], [])[0][field] if field else np.zeros(len(idx))
    if not by_series:
        return AggregateResult(
            agg, field, None, {}, _reduce_all(agg, vals), np.array([len(idx)], dtype=np.int64)
        )
    series = sel.series[idx]
    order = np.argsort(series, kind="stable")
    series, vals = series[order], vals[order]
    uniq, first, counts = np.unique(series, return_index=True, return_counts=True)
    if agg == "count":
        value: np.ndarray = counts.astype(np.int64)
    elif not len(uniq):
        value = np.empty(0, dtype=np.float64 if agg == "avg" else vals.dtype)
    elif agg in ("sum", "avg"):
        value = np.add.reduceat(vals, first)
        if agg == "avg":
            value = value / counts
    elif agg == "min":
        value = np.minimum.reduceat(vals, first)
    else:
        value = np.maximum.reduceat(vals, first)
    # entity values from one point per series: the tags of the others are never read
    _, ent = sel.fetch(idx[order[first]], [], list(opts.entity))
    return AggregateResult(agg, field, uniq, ent, value, counts.astype(np.int64))


def _reduce_all(agg: str, vals: np.ndarray) -> np.ndarray:
    n = len(vals)
    if agg == "count":
        return np.array([n], dtype=np.int64)
    if agg == "sum":
        return np.array([vals.sum()], dtype=vals.dtype)
    if n == 0:  # min, max and avg of nothing: no value
        return np.array([None], dtype=object)
    if agg == "avg":
        return np.array([vals.mean()], dtype=np.float64)
    return np.array([vals.min() if agg == "min" else vals.max()], dtype=vals.dtype)
