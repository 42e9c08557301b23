"""Trace queries over core-provided part readers: by trace IDs, or by time range + tag filters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lamina import InvalidInputError, QueryContext
from lamina_trace.model import Span, TagFilter


def _spans_of(rows: Mapping[str, Any], idx: Iterable[int] | None = None) -> list[Span]:
    n = len(rows["trace_id"])
    tags = rows.get("tags", {})
    out = []
    for i in range(n) if idx is None else idx:
        out.append(
            Span(
                trace_id=rows["trace_id"][i],
                span_id=rows["span_id"][i],
                timestamp=int(rows["timestamp"][i]),
                duration=int(rows["duration"][i]),
                payload=rows["payload"][i],
                tags={t: col[i] for t, col in tags.items() if col[i] is not None},
            )
        )
    return out


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
    found: dict[bytes, list[Span]] = dict.fromkeys(trace_ids, None)  # type: ignore[arg-type]
    found = {t: [] for t in found}  # asking twice for a trace returns it once
    for part in ctx.parts():
        for tid, spans in found.items():
            if part.may_contain(tid):
                for i in part.blocks.find(tid):
                    spans.extend(_spans_of(part.read_block(i)))
    return [s for spans in found.values() for s in spans]


def _tag_mask(part: Any, g: int, name: str, want: Any) -> np.ndarray | None:
    """Row mask of granule `g` for one tag condition; None if the part lacks the tag."""
    if isinstance(want, TagFilter):
        pred = want.predicate
    elif isinstance(want, list | tuple | set | frozenset):
        # value and type together: 1, 1.0 and True are different tag values
        allowed = {(type(a), a) for a in want}

        def pred(v: Any) -> bool:
            return (type(v), v) in allowed
    else:

        def pred(v: Any) -> bool:
            return v == want and type(v) is type(want)

    codes = part.tag_codes_matching(name, pred) if name in part.meta.tags else None
    if name not in part.meta.tags:
        return None
    if codes is not None:
        return np.isin(part.granule_tag(g, name, codes=True), codes)
    values = part.granule_tag(g, name)
    return np.fromiter((v is not None and pred(v) for v in values), dtype=bool, count=len(values))


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
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidInputError("limit", f"must be a non-negative int, got {limit!r}", engine="trace")
    for name, bound in (("start", start), ("end", end)):
        if bound is not None and (type(bound) is not int):
            raise InvalidInputError(
                name, f"must be an int (ns) or None, got {type(bound).__name__}", engine="trace"
            )
    if tags is not None and not isinstance(tags, Mapping):
        raise InvalidInputError(
            "tags", f"must be a mapping of tag -> condition, got {type(tags).__name__}", engine="trace"
        )
    lo = -(2**63) if start is None else start
    hi = 2**64 if end is None else end  # exclusive; beyond every int64 when unbounded
    conds = dict(tags or {})
    hits: list[tuple[int, int, Any, int, np.ndarray]] = []  # (ts, seq, part, block, rows)
    seq = 0
    for part in ctx.parts(start, end):
        grans = part.index.granules
        for g in np.nonzero((grans["max_ts"] >= lo) & (grans["min_ts"] < hi))[0]:
            g = int(g)
            ts = part.granule_column(g, "timestamp")
            mask = (ts >= lo) & (ts < hi)
            for name, want in conds.items():
                if not mask.any():
                    break
                tm = _tag_mask(part, g, name, want)
                mask &= tm if tm is not None else False
            rows = np.nonzero(mask)[0]
            if not len(rows):
                continue
            blocks = part.granule_blocks(g)
            lo_rows = part.blocks.row_lo[blocks.start : blocks.stop]
            which = np.searchsorted(lo_rows, rows, side="right") - 1
            for b in np.unique(which):
                sel = rows[which == b]
                hits.append((int(ts[sel].min()), seq, part, blocks.start + int(b), sel - lo_rows[b]))
                seq += 1
    out: list[Span] = []
    hits.sort(key=lambda h: (h[0], h[1]))
    for _, _, part, b, sel in hits:
        out.extend(_spans_of(part.read_block(b), sel.tolist()))
    out.sort(key=lambda s: s.timestamp)
    return out[:limit] if limit is not None else out
