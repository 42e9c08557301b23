"""The equal-key rule: entries of a series from several parts interleave by key; an optional
keep-predicate drops entries (e.g. those whose trace was deleted) when the rule runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import lamina
from lamina_sidx import Entry
from lamina_sidx.plugin import make_engine

T0 = 1_700_000_000_000_000_000


def test_merge_interleaves_series_by_key_and_keeps_every_entry(
    sidx: lamina.EngineHandle, batch: Callable[..., Any]
) -> None:
    a = [Entry(1, k, T0 + k, b"a%d" % k) for k in range(0, 3000, 2)]
    b = [Entry(1, k, T0 + k, b"b%d" % k) for k in range(1, 3000, 2)]
    for es in (a, b):
        sidx.write(batch(es))
        sidx.flush()
    assert sidx.merge_now(force=True) == 1
    (part,) = sidx.tables()[0].live_parts
    assert part.reader.meta.rows == 3000
    assert part.reader.meta.column_ranges == {"key": [0, 2999]}
    assert [e.key for e in sidx.query(series=1)] == list(range(3000))


def test_keep_predicate_drops_entries_at_merge(
    open_store: Callable[..., lamina.Store], batch: Callable[..., Any]
) -> None:
    deleted = {b"t3", b"t7"}

    def keep(rows: dict[str, Any]) -> np.ndarray:
        return np.fromiter((d not in deleted for d in rows["data"]), dtype=bool, count=len(rows["data"]))

    store = open_store(make_engine(keep=keep))
    h = store.engine("sidx")
    # t3 is written before it is "deleted"; t7 in the second part: both meet in the merge
    h.write(batch([Entry(1, k, T0, b"t%d" % k) for k in range(0, 10, 2)] + [Entry(1, 3, T0, b"t3")]))
    h.flush()
    deleted_later = {b"t7"}
    h.write(batch([Entry(1, k, T0, b"t%d" % k) for k in range(1, 10, 2) if k != 3]))
    deleted.discard(b"t7")  # not deleted yet when flushed...
    h.flush()
    assert {e.data for e in h.query()} >= {b"t7"}
    deleted.update(deleted_later)  # ...deleted now: the merge drops it
    h.merge_now(force=True)
    got = [e.data for e in h.query(series=1)]
    assert got == [b"t%d" % k for k in range(10) if k not in (3, 7)]
