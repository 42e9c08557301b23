"""What an engine's query function gets: consistent snapshots of the parts it may need.

The context picks the tables whose time segment overlaps the query, takes a snapshot of each
(committed parts, parts being flushed, and a memory part of unflushed rows), prunes parts by their
time bounds, and releases everything when the query ends. A damaged part met during the query is
quarantined by the caller (EngineHandle.query), and the error names it.

The `check_*` functions check the arguments every engine's query takes (time bounds in ns, order,
limit) with one wording whichever engine an application queries: an `InvalidInputError` naming
the argument and the engine, before any part is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lamina.errors import InvalidInputError
from lamina.format.part_reader import PartReader
from lamina.schema import BlockSchema
from lamina.snapshot import Snapshot

if TYPE_CHECKING:
    from lamina.table import Table


class QueryContext:
    def __init__(self, schema: BlockSchema, tables: list[Table]) -> None:
        self.schema = schema
        self._tables = tables
        self._snaps: list[tuple[Table, Snapshot]] = []
        self.parts_read = 0

    def parts(self, start: int | None = None, end: int | None = None) -> Iterator[PartReader]:
        """Readers of every part that may hold rows with start <= ts < end (None = unbounded):
        table by table (time order), each table's parts oldest data first, then its unflushed rows."""
        for table in self._tables:
            seg = table.segment_start
            interval = table.engine.segment_interval_ns
            if (end is not None and seg >= end) or (start is not None and seg + interval <= start):
                continue
            snap = table.snapshot()
            self._snaps.append((table, snap))
            # oldest data first, unflushed rows last: engines rely on it for "write order"
            committed = sorted(
                (h for h in snap.parts if not h.in_memory), key=lambda h: h.reader.meta.data_seq
            )
            for h in [*committed, *(h for h in snap.parts if h.in_memory)]:
                m = h.reader.meta
                if (end is not None and m.min_ts >= end) or (start is not None and m.max_ts < start):
                    continue
                self.parts_read += 1
                yield h.reader

    def table_of(self, reader: PartReader) -> Table | None:
        for table, snap in self._snaps:
            if any(h.reader is reader for h in snap.parts):
                return table
        return None

    def close(self) -> None:
        for _, snap in self._snaps:
            snap.release()
        self._snaps.clear()


def check_time_bound(name: str, value: Any, *, engine: str) -> int | None:
    """`start` / `end`: an int (ns) or None (open)."""
    if value is not None and type(value) is not int:
        raise InvalidInputError(
            name, f"must be an int (ns) or None, got {type(value).__name__}", engine=engine
        )
    return value


def check_order(value: Any, *, engine: str) -> str:
    if value not in ("asc", "desc"):
        raise InvalidInputError("order", f"must be 'asc' or 'desc', got {value!r}", engine=engine)
    return value


def check_limit(value: Any, *, engine: str, required: bool = False) -> int | None:
    """A non-negative int; None (no limit) unless `required`."""
    if (value is None and not required) or (type(value) is int and value >= 0):
        return value
    raise InvalidInputError("limit", f"must be a non-negative int, got {value!r}", engine=engine)
