"""A ledger of what was written, and the rows a store must therefore return.

Tests never compare against "no exception raised": they compare a store's answer with the ledger.
The expected rows are computed by writing the same batches into a fresh reference store (one
durable flush per batch) and asking the engine's own `query_all`, so an engine whose equal-key rule
drops or combines rows (highest version wins, say) is compared with what its rule promises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lamina
from lamina.io.sim import SimFS
from lamina.plugins import Registry

__all__ = ["Ledger", "split_batch"]


class Ledger:
    """Expected rows of any subset of `batches` (by index), cached."""

    def __init__(
        self,
        engine: lamina.Engine,
        batches: Sequence[Any],
        query_all: Callable[[lamina.EngineHandle], list[Any]],
    ) -> None:
        self.engine, self.batches, self.query_all = engine, list(batches), query_all
        self._cache: dict[tuple[tuple[int, ...], bool], list[Any]] = {}

    def expected(self, which: Iterable[int] | None = None, *, merge: bool = False) -> list[Any]:
        """Sorted rows of the batches in `which` (all when None), each written and flushed in
        order into a reference store; with `merge`, after merging that store's parts."""
        return self.after(sorted(set(range(len(self.batches)) if which is None else which)), merge=merge)

    def after(self, sequence: Sequence[int], *, merge: bool = False) -> list[Any]:
        """Sorted rows of a reference store into which the batches at `sequence` (indices, in
        that order, repeats allowed) were written, one flush each; with `merge`, merged after."""
        key = (tuple(sequence), merge)
        rows = self._cache.get(key)
        if rows is None:
            ref = lamina.Store(
                "/reference", fs=SimFS(), registry=Registry(), engines=[self.engine], background=False
            )
            try:
                h = ref.engine(self.engine.name)
                for i in key[0]:
                    h.write(self.batches[i])
                    h.flush()
                if merge:
                    h.merge_now()
                rows = self._cache[key] = sorted(self.query_all(h))
            finally:
                ref.close()
        return rows


def split_batch(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cut a columnar batch into two batches (first half, second half of its rows).

    Columns are sequences of equal length, or mappings of sub-column -> sequence (tags given as
    columns); every one is cut at the same row."""
    lengths = {len(v) for v in batch.values() if not isinstance(v, Mapping)}
    if len(lengths) != 1:
        raise ValueError(f"cannot split a batch whose columns have lengths {sorted(lengths)}")
    n = lengths.pop()
    mid = n // 2

    def cut(v: Any, sl: slice) -> Any:
        if isinstance(v, Mapping):
            return {k: cut(c, sl) for k, c in v.items()}
        return v[sl]

    return [
        {k: cut(v, slice(0, mid)) for k, v in batch.items()},
        {k: cut(v, slice(mid, n)) for k, v in batch.items()},
    ]
