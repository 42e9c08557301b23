"""The equal-key rule: identical events from one source are stored once.

The core calls the rule with every row of one block key (one source), sorted by the sort key
(`source`, `ts`), older parts first, both when a buffer is flushed and when parts are merged. It
returns the rows to keep, in the same columnar form (`lamina.Rows`).
"""

from __future__ import annotations

from typing import Any

from lamina import Rows, take_rows


def tags_key(tags: dict[str, Any]) -> tuple[tuple[str, str, Any], ...]:
    """A hashable identity for a tag map; the type is part of it (1, 1.0 and True differ)."""
    return tuple(sorted((name, type(v).__name__, v) for name, v in tags.items()))


def drop_identical_events(rows: Rows) -> Rows:
    """Keep the first of each group of identical events (same ts, kind, body and tags)."""
    n = len(rows["source"])
    ts = rows["ts"].tolist()
    kinds, bodies = rows["kind"], rows["body"]
    tag_cols = [(t, col.tolist()) for t, col in rows.get("tags", {}).items()]
    seen: set[Any] = set()
    keep: list[int] = []
    for i in range(n):
        tags = {t: col[i] for t, col in tag_cols if col[i] is not None}
        identity = (ts[i], kinds[i], bodies[i], tags_key(tags))
        if identity not in seen:
            seen.add(identity)
            keep.append(i)
    return rows if len(keep) == n else take_rows(rows, keep)
