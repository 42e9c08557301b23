"""Batched reads: a long key-range scan as an iterator of bounded batches.

The engine's query runs inside one snapshot that the core releases when the query returns, so a
batch cannot hold it open between `next()` calls. Each batch is therefore its own query, continued
from the last entry returned by keyset pagination: `after=(last key, entries already returned with
that key)`. Ties are ordered by content (`Entry.order`), which merges do not change, so no entry
is skipped or repeated while parts are merged between batches; entries flushed between batches
appear if they sort after the cursor (each batch is consistent, the iteration is not a snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lamina import EngineHandle, InvalidInputError
from lamina_sidx.model import Entry


def iter_batches(
    handle: EngineHandle, *, batch_size: int = 1000, dataset: str = "default", **filters: Any
) -> Iterator[list[Entry]]:
    """Every entry `handle.query(**filters)` would return, in the same order, `batch_size` at a
    time (each batch holds at most `batch_size` entries; memory stays bounded by it)."""
    if type(batch_size) is not int or batch_size <= 0:
        raise InvalidInputError("batch_size", f"must be a positive int, got {batch_size!r}", engine="sidx")
    for banned in ("limit", "after"):
        if banned in filters:
            raise InvalidInputError(banned, "is managed by iter_batches", engine="sidx")
    after: tuple[int, int] | None = None
    while True:
        batch: list[Entry] = handle.query(dataset=dataset, limit=batch_size, after=after, **filters)
        if not batch:
            return
        yield batch
        if len(batch) < batch_size:
            return
        last = batch[-1].key
        tied = sum(1 for e in batch if e.key == last)
        after = (last, tied + (after[1] if after is not None and after[0] == last else 0))
