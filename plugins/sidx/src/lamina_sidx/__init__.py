"""Lamina's sidx engine: a secondary index of (series, int64 key) -> data bytes, sorted by
(series, key). Usable alone, or as the index of a trace dataset committed in the same
transaction (`lamina_sidx.traces.IndexedTraces`). See `lamina_sidx.plugin`."""

from lamina_sidx.model import Entry
from lamina_sidx.pages import iter_batches

__all__ = ["Entry", "iter_batches"]
