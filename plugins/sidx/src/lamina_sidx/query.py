"""sidx queries over core-provided part readers: series + key range (+ time range, tag filter),
ascending or descending by key, with a limit; or a full scan.

Work is done in two passes so payloads are read only for entries that are returned:
1. candidates: parts outside the key range (their metadata's `column_ranges`), the time range or
   the asked series are skipped; in the rest, only the blocks of the asked series whose time
   bounds overlap are visited, and their `key`/`timestamp` come from the granule-mode `keys.bin`
   (tags from their own granule chunks). This yields (part, block, row, key, series, ts) arrays.
   With a limit, each series' blocks are visited in key order (reversed for "desc"), each block
   keeps only its best `limit` rows (plus ties), and the scan of a series stops at the first block
   that cannot improve on what it already holds.
2. selection: candidates are ordered by key (then series, timestamp); with a limit only the first
   `limit` (plus the entries tied with the last one) are kept, and `data.bin` is read only for the
   blocks holding those. Entries fully equal on (key, series, timestamp) are ordered by content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lamina import InvalidInputError, PartReader, QueryContext, block_key
from lamina.query import check_limit, check_order, check_tag_conditions
from lamina_sidx.model import Entry
from lamina_sidx.schema import SCHEMA

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
ENGINE_NAME = "sidx"


def _bad(field: str, msg: str) -> InvalidInputError:
    return InvalidInputError(field, msg, engine=ENGINE_NAME)


def _int_or_none(name: str, v: Any) -> int | None:
    if v is None:
        return None
    if type(v) is not int and not isinstance(v, np.integer):
        raise _bad(name, f"must be an int or None, got {type(v).__name__}")
    if not _I64_MIN <= int(v) <= _I64_MAX:
        raise _bad(name, f"{v} does not fit in int64")
    return int(v)


def check_series(series: Any) -> list[int] | None:
    if series is None:
        return None
    items = [series] if type(series) is int or isinstance(series, np.integer) else series
    if isinstance(items, str | bytes | Mapping) or not hasattr(items, "__iter__"):
        raise _bad("series", f"must be an int, a sequence of ints or None, got {type(series).__name__}")
    out = []
    for v in items:
        iv = _int_or_none("series", v)
        if iv is None:
            raise _bad("series", "None is not a series")
        out.append(iv)
    return sorted(set(out))


def _predicate(name: str, want: Any) -> Callable[[Any], bool]:
    if callable(want):
        return want  # type: ignore[no-any-return]
    if isinstance(want, list | tuple | set | frozenset):
        # value and type together: 1, 1.0 and True are different tag values
        allowed = {(type(a), a) for a in want}
        return lambda v: (type(v), v) in allowed
    return lambda v: v == want and type(v) is type(want)


class _Candidates:
    """Column arrays of candidate entries, appended part by part."""

    def __init__(self) -> None:
        self.parts: list[PartReader] = []
        self.cols: dict[str, list[np.ndarray]] = {
            c: [] for c in ("part", "block", "row", "key", "series", "ts")
        }

    def add(
        self,
        part_idx: int,
        block: int,
        rows: np.ndarray,
        keys: np.ndarray,
        series: np.ndarray,
        ts: np.ndarray,
    ) -> None:
        n = len(rows)
        self.cols["part"].append(np.full(n, part_idx, dtype=np.int64))
        self.cols["block"].append(np.full(n, block, dtype=np.int64))
        self.cols["row"].append(rows)
        self.cols["key"].append(keys)
        self.cols["series"].append(series)
        self.cols["ts"].append(ts)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            c: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)).astype(np.int64, copy=False)
            for c, v in self.cols.items()
        }


def _scan_part(
    part: PartReader,
    part_idx: int,
    series: list[int] | None,
    klo: int,
    khi: int,
    tlo: int,
    thi: int,
    preds: dict[str, Callable[[Any], bool]],
    out: _Candidates,
    want: int | None = None,
    desc: bool = False,
) -> None:
    """Append this part's candidates to `out`. With `want` (limit + skip), at most the first
    `want` entries of each series in key order (`desc`: the last), plus entries tied with the
    last of them, are kept: a series' blocks hold its entries sorted by key, so its blocks are
    visited in key order and the scan stops as soon as a block cannot hold anything better."""
    rng = part.meta.column_ranges.get("key")
    if rng is not None and (rng[1] < klo or rng[0] > khi):
        return  # part pruned by its key range
    if any(t not in part.meta.tags for t in preds):
        return  # an absent tag matches nothing
    bt = part.blocks
    if series is None:
        runs: list[range] = []
        start = 0
        for i in range(1, len(bt.keys) + 1):
            if i == len(bt.keys) or bt.keys[i] != bt.keys[start]:
                runs.append(range(start, i))
                start = i
    else:
        runs = []
        for s in series:
            k = block_key(SCHEMA, s)
            if part.may_contain(k):
                runs.append(bt.find(k))
    for run in runs:
        got: list[np.ndarray] = []  # keys kept so far in this series, in visiting order
        n_got = 0
        for b in reversed(run) if desc else run:
            if bt.max_ts[b] < tlo or bt.min_ts[b] >= thi:
                continue  # block pruned by time
            g, lo, hi = int(bt.granule_of[b]), int(bt.row_lo[b]), int(bt.row_hi[b])
            keys = part.granule_column(g, "key")[lo:hi]
            ordered = want is not None and bool(np.all(keys[1:] >= keys[:-1]))
            if ordered and n_got >= want:  # type: ignore[operator]
                # the want-th best key of this series so far (`got` is in visiting order)
                bound = np.concatenate(got)[want - 1]  # type: ignore[operator]
                if (keys[-1] < bound) if desc else (keys[0] > bound):
                    break  # this block and the rest of the series are beyond the bound
            sel = (keys >= klo) & (keys <= khi)
            if not sel.any():
                continue  # block pruned by key range: data.bin never read
            ts = part.granule_column(g, "timestamp")[lo:hi]
            sel &= (ts >= tlo) & (ts < thi)
            rows = np.flatnonzero(sel)
            for name, pred in preds.items():
                if not len(rows):
                    break
                rows = rows[part.granule_tag_mask(g, name, pred, rows + lo)]
            if not len(rows):
                continue
            if ordered:
                rows = _trim(rows, keys, want, desc)  # type: ignore[arg-type]
                got.append(keys[rows][::-1] if desc else keys[rows])
                n_got += len(rows)
            ser = part.granule_column(g, "series")[lo:hi]
            out.add(part_idx, b, rows, keys[rows], ser[rows], ts[rows])


def _trim(rows: np.ndarray, keys: np.ndarray, want: int, desc: bool) -> np.ndarray:
    """The first `want` of `rows` in key order (`desc`: the last), plus rows tied with the last
    one kept (ties are ordered by content later, so none may be dropped here)."""
    if len(rows) <= want:
        return rows
    k = keys[rows]
    if desc:
        bound = k[len(k) - want]
        return rows[k >= bound]
    bound = k[want - 1]
    return rows[k <= bound]


def run(
    ctx: QueryContext,
    *,
    series: Any = None,
    key_min: int | None = None,
    key_max: int | None = None,
    start: int | None = None,
    end: int | None = None,
    tags: Mapping[str, Any] | None = None,
    order: str = "asc",
    limit: int | None = None,
    after: tuple[int, int] | None = None,
) -> list[Entry]:
    """Entries of `series` (an int, ints, or None = every series) with key_min <= key <= key_max
    (inclusive, None = unbounded) and start <= timestamp < end whose tags match every condition
    (a value, a list of values, or a predicate), ordered by key (`order` "asc" or "desc"; equal keys
    by series, timestamp, data), at most `limit` of them.

    `after=(key, skip)` continues a previous page: entries before `key` in this order are skipped,
    and so are the first `skip` entries whose key equals `key` (see `lamina_sidx.iter_batches`).
    """
    sers = check_series(series)
    klo = _int_or_none("key_min", key_min)
    khi = _int_or_none("key_max", key_max)
    tlo_ = _int_or_none("start", start)
    thi_ = _int_or_none("end", end)
    klo = _I64_MIN if klo is None else klo
    khi = _I64_MAX if khi is None else khi
    if klo > khi:
        raise _bad("key_min", f"{klo} is greater than key_max {khi}")
    check_order(order, engine=ENGINE_NAME)
    check_limit(limit, engine=ENGINE_NAME)
    conds = check_tag_conditions(tags, engine=ENGINE_NAME)
    skip = 0
    if after is not None:
        if not (
            isinstance(after, tuple)
            and len(after) == 2
            and all(type(x) is int for x in after)
            and _I64_MIN <= after[0] <= _I64_MAX
            and after[1] >= 0
        ):
            raise _bad(
                "after", f"must be a (key, skip) pair: an int64 key and an int skip >= 0, got {after!r}"
            )
        if order == "asc":
            klo = max(klo, after[0])
        else:
            khi = min(khi, after[0])
        skip = after[1]
        if klo > khi:
            return []
    preds = {t: _predicate(t, w) for t, w in conds.items()}
    tlo = _I64_MIN if tlo_ is None else tlo_
    thi = 2**64 if thi_ is None else thi_  # exclusive; beyond every int64 when unbounded

    desc = order == "desc"
    want = None if limit is None else limit + skip
    if want == 0:
        return []
    cands = _Candidates()
    for part in ctx.parts(tlo_, thi_):
        cands.parts.append(part)
        _scan_part(part, len(cands.parts) - 1, sers, klo, khi, tlo, thi, preds, cands, want, desc)
    c = cands.arrays()
    if not len(c["key"]):
        return []
    idx = np.lexsort((c["ts"], c["series"], c["key"]))
    if desc:
        idx = idx[::-1]
    if limit is not None:
        want = limit + skip
        if want < len(idx):
            if want == 0:
                return []
            keys_sorted = c["key"][idx]
            boundary = keys_sorted[want - 1]
            # keep every entry tied with the last wanted key: ties are ordered by content below
            on_side = keys_sorted >= boundary if desc else keys_sorted <= boundary
            idx = idx[: int(np.count_nonzero(on_side))]
    entries = _materialize(cands.parts, c, idx)
    _settle_ties(entries, c, idx, desc)
    if skip and after is not None:
        k0 = after[0]
        n_eq = 0
        while n_eq < len(entries) and n_eq < skip and entries[n_eq].key == k0:
            n_eq += 1
        entries = entries[n_eq:]
    return entries[:limit] if limit is not None else entries


def _materialize(parts: list[PartReader], c: dict[str, np.ndarray], idx: np.ndarray) -> list[Entry]:
    """Entries of the candidates `idx`, in that order; data and tags come from one block read per
    (part, block), visited in storage order."""
    n = len(idx)
    out: list[Entry | None] = [None] * n
    pos = np.lexsort((c["block"][idx], c["part"][idx]))  # positions grouped by (part, block)
    grouped = idx[pos]
    gp, gb = c["part"][grouped], c["block"][grouped]
    cuts = np.flatnonzero((gp[1:] != gp[:-1]) | (gb[1:] != gb[:-1])) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), n]
    rows_l, keys_l = c["row"][grouped].tolist(), c["key"][grouped].tolist()
    sers_l, ts_l, pos_l = c["series"][grouped].tolist(), c["ts"][grouped].tolist(), pos.tolist()
    for a, z in zip(starts, ends, strict=True):
        data = parts[int(gp[a])].read_block(int(gb[a]), ["data", "tags"])
        payloads = data["data"]
        tag_cols = [(t, col.tolist()) for t, col in data.get("tags", {}).items()]
        for i in range(a, z):
            r = rows_l[i]
            out[pos_l[i]] = Entry(
                series=sers_l[i],
                key=keys_l[i],
                timestamp=ts_l[i],
                data=payloads[r],
                tags={name: col[r] for name, col in tag_cols if col[r] is not None},
            )
    return out  # type: ignore[return-value]


def _settle_ties(entries: list[Entry], c: dict[str, np.ndarray], idx: np.ndarray, desc: bool) -> None:
    """`entries` follow (key, series, timestamp) order already (`idx` is sorted so); only runs
    equal on all three need the full content order (data, tags), sorted in place."""
    if len(idx) < 2:
        return
    k, se, ts = c["key"][idx], c["series"][idx], c["ts"][idx]
    same = (k[1:] == k[:-1]) & (se[1:] == se[:-1]) & (ts[1:] == ts[:-1])
    if not same.any():
        return
    start = None
    for i, eq in enumerate([*same.tolist(), False]):
        if eq and start is None:
            start = i
        elif not eq and start is not None:
            entries[start : i + 1] = sorted(entries[start : i + 1], key=Entry.order, reverse=desc)
            start = None
