"""Trace queries over core-provided part readers: by trace IDs, or by time range + tag filters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lamina import InvalidInputError, QueryContext
from lamina.query import check_limit, check_tag_conditions, check_time_bound
from lamina_trace.model import Span, TagFilter


def _spans_of(rows: Mapping[str, Any], idx: Iterable[int] | None = None) -> list[Span]:
    n = len(rows["trace_id"])
    tids, sids, pays = rows["trace_id"], rows["span_id"], rows["payload"]
    ts, durs = rows["timestamp"].tolist(), rows["duration"].tolist()
    tag_cols = [(t, col.tolist()) for t, col in rows.get("tags", {}).items()]
    return [
        Span(
            trace_id=tids[i],
            span_id=sids[i],
            timestamp=ts[i],
            duration=durs[i],
            payload=pays[i],
            tags={t: col[i] for t, col in tag_cols if col[i] is not None},
        )
        for i in (range(n) if idx is None else idx)
    ]


def by_trace_ids(ctx: QueryContext, trace_ids: Sequence[bytes]) -> list[Span]:
    """Every span of the given traces, grouped by trace in the order asked (an ID asked twice is
    returned once). A trace's spans come time segment by time segment, each segment's in the
    order they were written; flushing does not change that order."""
    for i, t in enumerate(trace_ids):
        if type(t) is not bytes:
            raise InvalidInputError(
                "trace_ids", f"expected bytes, got {type(t).__name__}", engine="trace", row=i
            )
    # ctx.parts() yields segment by segment, each oldest part first and unflushed rows last:
    # that is write order for spans of one trace.
    found: dict[bytes, list[Span]] = {t: [] for t in dict.fromkeys(trace_ids)}  # each ID once
    for part in ctx.parts():
        for tid, spans in found.items():
            if part.may_contain(tid):
                for i in part.blocks.find(tid):
                    spans.extend(_spans_of(part.read_block(i)))
    return [s for spans in found.values() for s in spans]


def _predicate(want: Any) -> Callable[[Any], bool]:
    """One tag condition as a predicate over present values: a `TagFilter`, a list of values
    (IN) or a value (equality); value and type together, so 1, 1.0 and True differ."""
    if isinstance(want, TagFilter):
        return want.predicate
    if isinstance(want, list | tuple | set | frozenset):
        allowed = {(type(a), a) for a in want}
        return lambda v: (type(v), v) in allowed
    return lambda v: v == want and type(v) is type(want)


def by_time_range(
    ctx: QueryContext,
    start: int | None,
    end: int | None,
    tags: Mapping[str, Any] | None,
    limit: int | None,
) -> list[Span]:
    """Spans with start <= timestamp < end whose tags match every condition, oldest first.

    A condition is a value (equality, same type), a list of values (IN), or a `TagFilter`.
    Pruning: segments and parts by time bounds, granules by their min/max timestamps, then
    vectorised row masks per granule; only matching blocks' payloads are read.
    """
    check_limit(limit, engine="trace")
    check_time_bound("start", start, engine="trace")
    check_time_bound("end", end, engine="trace")
    # a value (equality), values (IN) or a TagFilter: a plain callable would be compared as a value
    conds = check_tag_conditions(tags, engine="trace", callables=False, predicate_types=(TagFilter,))
    lo = -(2**63) if start is None else start
    hi = 2**64 if end is None else end  # exclusive; beyond every int64 when unbounded
    # (first matching ts, seq, spans): seq is (part, granule, block) order, the order hits are read
    hits: list[tuple[int, int, list[Span]]] = []
    for part in ctx.parts(start, end):
        _scan_part(part, lo, hi, conds, hits)
    # Spans oldest first; equal timestamps keep the order of their blocks' first match, then
    # (part, block) order, then row order (as a stable sort of the hits' spans gives).
    hits.sort(key=lambda h: (h[0], h[1]))
    out = [s for _, _, spans in hits for s in spans]
    out.sort(key=lambda s: s.timestamp)
    return out[:limit] if limit is not None else out


_SPAN_COLUMNS = ["trace_id", "span_id", "payload"]


def _scan_part(part: Any, lo: int, hi: int, conds: dict[str, Any], hits: list) -> None:
    """Append the matching spans of one part to `hits`, block by block in storage order."""
    grans = part.index.granules
    cand = np.nonzero((grans["max_ts"] >= lo) & (grans["min_ts"] < hi))[0]
    if not len(cand):
        return
    bt = part.blocks
    # per-block time bounds: a granule of a merged part (sorted by trace ID) spans the whole time
    # range, but its blocks (one trace each) are narrow
    blk_in = (bt.max_ts >= lo) & (bt.min_ts < hi)
    starts = part.granule_block_starts
    tag_names = part.tag_names
    for g in cand.tolist():
        b0, b1 = int(starts[g]), int(starts[g + 1])
        if not blk_in[b0:b1].any():
            continue
        ts = part.granule_column(g, "timestamp")
        rows = np.nonzero((ts >= lo) & (ts < hi))[0]
        for name, want in conds.items():
            if not len(rows):
                break
            rows = rows[part.granule_tag_mask(g, name, _predicate(want), rows)]
        if not len(rows):
            continue
        lo_rows = bt.row_lo[b0:b1]
        which = np.searchsorted(lo_rows, rows, side="right") - 1
        # matched rows are sorted, so each block's rows are one run
        cuts = np.flatnonzero(np.diff(which)) + 1
        run_lo = np.concatenate(([0], cuts)).tolist()
        run_hi = [*run_lo[1:], len(rows)]
        sel_ts = ts[rows]
        ts_l = sel_ts.tolist()
        dur_l = part.granule_column(g, "duration")[rows].tolist()
        tag_cols = [(t, part.granule_tag(g, t, rows=rows).tolist()) for t in tag_names]
        rows_l = rows.tolist()
        for a, b in zip(run_lo, run_hi, strict=True):
            blk = int(which[a])
            block = b0 + blk
            base = int(lo_rows[blk])
            data = part.read_block(block, _SPAN_COLUMNS, [])
            tid, sid, pay = data["trace_id"], data["span_id"], data["payload"]
            spans = []
            for k in range(a, b):
                r = rows_l[k] - base
                spans.append(
                    Span(
                        trace_id=tid[r],
                        span_id=sid[r],
                        timestamp=ts_l[k],
                        duration=dur_l[k],
                        payload=pay[r],
                        tags={t: col[k] for t, col in tag_cols if col[k] is not None},
                    )
                )
            hits.append((min(ts_l[a:b]), len(hits), spans))
