"""Copy-on-write snapshots with reference counts: a query never sees a part disappear.

The table's live set holds one reference to each part; every query snapshot holds one more. A part
replaced by a merge (or dropped by quarantine) is `retired`: its files are removed only when the
last reference goes, by the callback the table supplies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lamina.format.part_reader import PartReader
from lamina.format.rows import Rows, rows_len


class PartHandle:
    __slots__ = ("_lock", "_on_free", "in_memory", "reader", "refs", "retired")

    def __init__(
        self,
        reader: PartReader,
        *,
        in_memory: bool = False,
        on_free: Callable[[PartHandle], None] | None = None,
    ) -> None:
        self.reader = reader
        self.in_memory = in_memory
        self.refs = 1  # the owner's reference (live set or memory view)
        self.retired = False
        self._on_free = on_free
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.reader.name

    @property
    def part_id(self) -> int:
        return self.reader.meta.part_id

    def set_on_free(self, fn: Callable[[PartHandle], None]) -> None:
        self._on_free = fn

    def incref(self) -> None:
        with self._lock:
            self.refs += 1

    def decref(self) -> None:
        with self._lock:
            self.refs -= 1
            free = self.refs == 0
        if free:
            self.reader.close()
            if self._on_free is not None:
                self._on_free(self)

    def retire(self) -> None:
        """Drop the owner's reference; files go when the last reader lets go."""
        self.retired = True
        self.decref()


class MemRows:
    """Rows not yet durable (the write buffer, or a flush in progress) and the memory part built
    from them on demand for queries. Immutable once made: the buffer is replaced on each write."""

    __slots__ = ("_dropped", "_handle", "_lock", "batches", "nrows")

    def __init__(self, batches: list[Rows]) -> None:
        self.batches = batches
        self.nrows = sum(rows_len(b) for b in batches)
        self._handle: PartHandle | None = None
        self._dropped = False
        self._lock = threading.Lock()

    def acquire(self, build: Callable[[list[Rows]], PartHandle]) -> PartHandle:
        """The memory part of these rows, with a reference for the caller (built at most once while
        these rows are current)."""
        with self._lock:
            if self._handle is not None:
                self._handle.incref()
                return self._handle
            h = build(self.batches)
            if not self._dropped:
                self._handle = h
                h.incref()
            return h

    def drop(self) -> None:
        """These rows are no longer current (flushed, or superseded by a newer buffer)."""
        with self._lock:
            self._dropped = True
            h, self._handle = self._handle, None
        if h is not None:
            h.decref()


class Snapshot:
    """A consistent set of parts; release it (or use it as a context manager) when done."""

    def __init__(self, epoch: int, parts: tuple[PartHandle, ...], *, adopt: bool = False) -> None:
        """`adopt`: the caller already took one reference per part on the snapshot's behalf."""
        self.epoch = epoch
        self.parts = parts
        if not adopt:
            for p in parts:
                p.incref()
        self._released = False

    @property
    def readers(self) -> list[PartReader]:
        return [p.reader for p in self.parts]

    def release(self) -> None:
        if not self._released:
            self._released = True
            for p in self.parts:
                p.decref()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
