"""Event queries over the part readers the core hands out through `QueryContext.parts()`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lamina import InvalidInputError, QueryContext
from lamina_events.model import Event
from lamina_events.rules import tags_key


def _check(start: Any, end: Any, limit: Any) -> None:
    for name, bound in (("start", start), ("end", end)):
        if bound is not None and type(bound) is not int:
            raise InvalidInputError(
                name, f"must be an int (ns) or None, got {type(bound).__name__}", engine="events"
            )
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidInputError("limit", f"must be a non-negative int, got {limit!r}", engine="events")


def _kinds(kind: str | Iterable[str] | None) -> frozenset[str] | None:
    if kind is None:
        return None
    wanted = frozenset([kind]) if isinstance(kind, str) else frozenset(kind)
    for k in wanted:
        if type(k) is not str:
            raise InvalidInputError("kind", f"expected str, got {type(k).__name__}", engine="events")
    return wanted


def events(
    ctx: QueryContext,
    *,
    start: int | None = None,
    end: int | None = None,
    kind: str | Iterable[str] | None = None,
    source: bytes | None = None,
    limit: int | None = None,
) -> list[Event]:
    """Events with start <= ts < end (ns; None = unbounded), of `kind` (one name or several),
    from `source` if given; oldest first, at most `limit` (the earliest ones).

    Identical events are returned once even before a merge has dropped the copies on disk, so an
    answer never depends on when the background merge ran.
    """
    _check(start, end, limit)
    kinds = _kinds(kind)
    if source is not None and type(source) is not bytes:
        raise InvalidInputError("source", f"expected bytes, got {type(source).__name__}", engine="events")
    lo = -(2**63) if start is None else start
    hi = 2**64 if end is None else end  # exclusive; beyond every int64 when unbounded
    found: list[Event] = []
    seen: set[Any] = set()
    for part in ctx.parts(start, end):  # time order, each table's oldest part first
        blocks = part.blocks
        if source is None:
            candidates: Iterable[int] = range(len(blocks.keys))
        elif part.may_contain(source):  # the source.filter bloom filter
            candidates = blocks.find(source)
        else:
            continue
        for i in candidates:
            if blocks.max_ts[i] < lo or blocks.min_ts[i] >= hi:  # block time bounds
                continue
            rows = part.read_block(i)
            ts = rows["ts"].tolist()
            tag_cols = [(t, col.tolist()) for t, col in rows.get("tags", {}).items()]
            for j, t in enumerate(ts):
                if not lo <= t < hi or (kinds is not None and rows["kind"][j] not in kinds):
                    continue
                tags = {name: col[j] for name, col in tag_cols if col[j] is not None}
                identity = (rows["source"][j], t, rows["kind"][j], rows["body"][j], tags_key(tags))
                if identity in seen:
                    continue
                seen.add(identity)
                found.append(Event(rows["source"][j], t, rows["kind"][j], rows["body"][j], tags))
    found.sort(key=lambda e: (e.ts, e.source))  # stable: equal keys keep read order
    return found[:limit] if limit is not None else found
