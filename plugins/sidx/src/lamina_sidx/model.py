"""What the sidx engine stores and returns."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Entry:
    """One index entry: `data` (e.g. a trace ID) filed under (series, key) at `timestamp`."""

    series: int
    key: int
    timestamp: int
    data: bytes
    tags: dict[str, Any] = attrs.field(factory=dict, eq=True, hash=False)

    def order(self) -> tuple[Any, ...]:
        """Total, content-defined order of entries with equal keys: physical order changes with
        merges, so ties are broken by content (pagination relies on it being stable)."""
        return (
            self.key,
            self.series,
            self.timestamp,
            self.data,
            tuple(sorted((k, type(v).__name__, repr(v)) for k, v in self.tags.items())),
        )
