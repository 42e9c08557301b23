"""Stream queries over core-provided part readers.

One scan serves every query shape (time range, series, tag filter, element IDs, order, limit,
projection). Work is pruned at every level before a row is touched: time segments and parts by
their time bounds (`QueryContext.parts`), parts by the series Bloom filter, then blocks by their
time bounds, by series (block key) and by the per-block tag summaries (`Filter.blocks`). Only the
surviving blocks' rows are examined, granule by granule, with vectorised masks. Matches are
ordered by (timestamp, series ID, element ID); with a limit, element IDs and tags are decoded only
for the rows that can make the cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lamina import CorruptionReason, CorruptPartError, InvalidInputError, PartReader, QueryContext
from lamina.batch import check_tag_name, check_text
from lamina.query import check_limit, check_order, check_time_bound
from lamina_stream.model import Element, Filter, QueryStats, as_filter, series_id
from lamina_stream.schema import SERIES

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def block_key(sid: int) -> bytes:
    """The core's block key of an INT64 block-key value: big-endian with the sign bit flipped,
    so keys sort as the ints do (lamina.format.part_writer.key_of; a test pins the two)."""
    return ((sid + (1 << 63)) & ((1 << 64) - 1)).to_bytes(8, "big")


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c)."""
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    shift = starts - (np.cumsum(counts) - counts)
    return np.repeat(shift, counts) + np.arange(total, dtype=np.int64)


def _bad(field: str, msg: str) -> InvalidInputError:
    return InvalidInputError(field, msg, engine="stream")


class _Matches:
    """Matched rows, as parallel arrays appended granule by granule."""

    def __init__(self) -> None:
        self.ts: list[np.ndarray] = []
        self.sid: list[np.ndarray] = []
        self.part: list[np.ndarray] = []
        self.gran: list[np.ndarray] = []
        self.row: list[np.ndarray] = []

    def add(self, pi: int, g: int, rows: np.ndarray, ts: np.ndarray, sid: np.ndarray) -> None:
        n = len(rows)
        self.ts.append(ts)
        self.sid.append(sid)
        self.part.append(np.full(n, pi, dtype=np.int64))
        self.gran.append(np.full(n, g, dtype=np.int64))
        self.row.append(rows)

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.ts:
            e = np.zeros(0, dtype=np.int64)
            return e, e, e, e, e
        return tuple(np.concatenate(x) for x in (self.ts, self.sid, self.part, self.gran, self.row))


def _strs(name: str, value: Any) -> list[str]:
    """A collection (list, tuple, set...) of str arguments, each valid UTF-8 (no stored text is
    otherwise); never one str, which would be read as its characters."""
    if isinstance(value, str | bytes | Mapping | np.ndarray) or not hasattr(value, "__iter__"):
        raise _bad(name, f"must be a list of str, got {type(value).__name__}")
    items = list(value)
    for i, x in enumerate(items):
        if type(x) is not str:
            raise InvalidInputError(
                name, f"must hold str, got {type(x).__name__} {x!r}", engine="stream", row=i
            )
        check_text(name, x, engine="stream", row=i)
    return items


def _series_keys(series: Any) -> list[bytes] | None:
    if series is None:
        return None
    items = [series] if isinstance(series, Mapping) else series
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise _bad(
            "series", f"expected a mapping of entity tags or a list of them, got {type(series).__name__}"
        )
    keys = []
    for i, m in enumerate(items):
        if not isinstance(m, Mapping) or not m:
            raise InvalidInputError(
                "series", "each series must be a non-empty mapping", engine="stream", row=i
            )
        for t, v in m.items():
            check_tag_name("series", t, engine="stream", row=i)
            if type(v) not in (str, int, bytes) or (type(v) is int and not _I64_MIN <= v <= _I64_MAX):
                raise InvalidInputError(
                    f"series.{t}",
                    f"entity tag values must be str, int64 or bytes, got {v!r}",
                    engine="stream",
                    row=i,
                )
            if type(v) is str:
                check_text(f"series.{t}", v, engine="stream", row=i)
        keys.append(block_key(series_id(m)))
    return sorted(set(keys))


def _series_of_blocks(part: PartReader) -> np.ndarray:
    """Series ID of every block, decoded from the block keys (`block_key` inverted)."""
    keys = part.blocks.keys
    if not keys:
        return np.zeros(0, dtype=np.int64)
    u = np.frombuffer(b"".join(keys), dtype=">u8").astype(np.uint64)
    return (u ^ np.uint64(1 << 63)).view(np.int64)


def _block_of(part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
    """Global block index of each row (granule-relative index) of granule g."""
    b0 = int(part.granule_block_starts[g])
    b1 = int(part.granule_block_starts[g + 1])
    return b0 + np.searchsorted(part.blocks.row_lo[b0:b1], rows, side="right") - 1


def scan(
    ctx: QueryContext,
    *,
    start: int | None = None,
    end: int | None = None,
    where: Any = None,
    series: Any = None,
    element_ids: Sequence[str] | None = None,
    order: str = "asc",
    limit: int | None = None,
    projection: Sequence[str] | None = None,
    stats: QueryStats | None = None,
) -> list[Element]:
    """Elements with start <= timestamp < end, of the given series (a mapping of entity tags or
    a list of them), matching `where` (a `Filter`, or a mapping tag -> value / list of values),
    with one of `element_ids`; ordered by (timestamp, series ID, element ID), ascending or
    descending (`order`); at most `limit`; tags restricted to `projection` (None = all)."""
    check_time_bound("start", start, engine="stream")
    check_time_bound("end", end, engine="stream")
    check_order(order, engine="stream")
    check_limit(limit, engine="stream")
    if projection is not None:
        projection = list(dict.fromkeys(_strs("projection", projection)))
    wanted_ids: set[str] | None = None
    if element_ids is not None:
        wanted_ids = set(_strs("element_ids", element_ids))
    flt: Filter | None = as_filter(where)
    keys = _series_keys(series)
    st = stats if stats is not None else QueryStats()
    lo = _I64_MIN if start is None else max(start, _I64_MIN)
    hi = _I64_MAX if end is None else min(end - 1, _I64_MAX)  # inclusive
    if lo > hi or limit == 0 or wanted_ids == set() or keys == []:
        return []
    parts: list[PartReader] = []
    found = _Matches()
    for part in ctx.parts(start, end):
        pi = len(parts)
        parts.append(part)
        _scan_part(part, pi, lo, hi, keys, flt, wanted_ids, found, st)
    return _materialize(parts, found, order, limit, projection)


def _scan_part(
    part: PartReader,
    pi: int,
    lo: int,
    hi: int,
    keys: list[bytes] | None,
    flt: Filter | None,
    wanted_ids: set[str] | None,
    found: _Matches,
    st: QueryStats,
) -> None:
    st.parts += 1
    bt = part.blocks
    n = len(bt.keys)
    st.blocks_total += n
    mask = (bt.max_ts >= lo) & (bt.min_ts <= hi)
    st.blocks_pruned_time += n - int(mask.sum())
    if keys is not None:
        smask = np.zeros(n, dtype=bool)
        for k in keys:
            if part.may_contain(k):
                r = bt.find(k)
                smask[r.start : r.stop] = True
        st.blocks_pruned_series += int((mask & ~smask).sum())
        mask &= smask
    if flt is not None and mask.any():
        fm = flt.blocks(part)
        st.blocks_pruned_tags += int((mask & ~fm).sum())
        mask &= fm
    if wanted_ids is not None and mask.any():
        im = part.column_blocks_may_match("element_id", list(wanted_ids))
        st.blocks_pruned_ids += int((mask & ~im).sum())
        mask &= im
    blocks = np.flatnonzero(mask)
    st.blocks_read += len(blocks)
    if not len(blocks):
        return
    gof = bt.granule_of[blocks]
    for g in np.unique(gof).tolist():
        st.granules_read += 1
        bsel = blocks[gof == g]
        rows = _ranges(bt.row_lo[bsel], bt.rows[bsel])
        ts = part.granule_column(g, "timestamp")[rows]
        keep = (ts >= lo) & (ts <= hi)
        rows = rows[keep]
        if flt is not None and len(rows):
            rows = rows[flt.rows(part, g, rows)]
        if wanted_ids is not None and len(rows):
            rows = rows[_id_mask(part, g, rows, wanted_ids)]
        if len(rows):
            sid = _series_of_blocks(part)[_block_of(part, g, rows)]
            found.add(pi, g, rows, part.granule_column(g, "timestamp")[rows], sid)


def _id_mask(part: PartReader, g: int, rows: np.ndarray, wanted: set[str]) -> np.ndarray:
    ids = part.granule_column(g, "element_id")[rows]
    return np.fromiter((e in wanted for e in ids), dtype=bool, count=len(ids))


def _materialize(
    parts: list[PartReader],
    found: _Matches,
    order: str,
    limit: int | None,
    projection: list[str] | None,
) -> list[Element]:
    ts, sid, pi, gran, row = found.arrays()
    o = np.lexsort((sid, ts))
    if order == "desc":
        o = o[::-1]
    if limit is not None and limit < len(o):
        # keep every row tied with the last one on (ts, series): element IDs settle those ties
        cut = limit
        last = o[limit - 1]
        while cut < len(o) and ts[o[cut]] == ts[last] and sid[o[cut]] == sid[last]:
            cut += 1
        o = o[:cut]
    sel = np.zeros(len(ts), dtype=bool)
    sel[o] = True
    out: list[Element] = []
    # decode element IDs and tags of the selected rows, part by part and granule by granule
    idx = np.flatnonzero(sel)
    if len(idx):
        grp = np.lexsort((row[idx], gran[idx], pi[idx]))
        idx = idx[grp]
        bounds = np.flatnonzero((np.diff(pi[idx]) != 0) | (np.diff(gran[idx]) != 0)) + 1
        for chunk in np.split(idx, bounds):
            p, g = int(pi[chunk[0]]), int(gran[chunk[0]])
            out.extend(_elements(parts[p], g, row[chunk], ts[chunk], sid[chunk], projection))
    out.sort(key=lambda e: (e.timestamp, e.series_id, e.element_id), reverse=order == "desc")
    return out[:limit] if limit is not None else out


def _elements(
    part: PartReader,
    g: int,
    rows: np.ndarray,
    ts: np.ndarray,
    sid: np.ndarray,
    projection: list[str] | None,
) -> list[Element]:
    ids = part.granule_column(g, "element_id")[rows].tolist()
    # The series ID returned is the stored column (series.bin, one checksummed frame a block),
    # not only the block key it was ordered by: a damaged frame is caught here, never served.
    blk = _block_of(part, g, rows)
    stored = np.empty(len(rows), dtype=np.int64)
    for b in np.unique(blk).tolist():
        sel = blk == b
        stored[sel] = part.read_block(b, ["series_id"], [])["series_id"][rows[sel] - part.blocks.row_lo[b]]
    if not np.array_equal(stored, sid):
        raise CorruptPartError(
            part.name, SERIES, -1, CorruptionReason.DECODE, "series ID differs from block key"
        )
    tag_names = part.tag_names if projection is None else [t for t in projection if t in part.meta.tags]
    tag_cols = []
    for t in tag_names:
        col = part.granule_tag(g, t, rows=rows)
        assert col is not None
        tag_cols.append((t, col.tolist()))
    ts_l, sid_l = ts.tolist(), sid.tolist()
    return [
        Element(
            series_id=sid_l[k],
            timestamp=ts_l[k],
            element_id=ids[k],
            tags={t: col[k] for t, col in tag_cols if col[k] is not None},
        )
        for k in range(len(rows))
    ]
