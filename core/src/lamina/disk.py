"""Disk space: refuse new writes before the disk is full, and merges that cannot fit.

A full disk fails flushes and merges midway, and a store that accepts writes until then fills it
to the last byte, where even its own recovery (a manifest, a reason.json) may not fit. So:

- Watermarks (Elasticsearch's flood stage, ClickHouse's reserved space): once the store's file
  system is `high` full (bytes or inodes), `write()` is refused with `DiskFullError` naming the
  usage and the remedy; rows already buffered still flush, and stored data is untouched. Writes
  are accepted again only once usage is below `low`, so a store does not flap at the line.
- A merge first checks that its output fits: the inputs' size plus a margin must be free (the
  output of a merge is at most about the size of its inputs; VictoriaMetrics reserves the same).
  Otherwise it does not start, and nothing is written.

Usage is measured with `statvfs` at most every `interval_s` (a write path must not pay a syscall
per call); the measurement is refreshed on every check once writes are refused.
"""

from __future__ import annotations

import errno
import threading
import time

import attrs

from lamina.errors import LaminaError
from lamina.io.fs import DiskSpace, FileSystem

#: A merge needs its inputs' size times this, plus MERGE_MARGIN_BYTES, free before it starts.
MERGE_SPACE_FACTOR = 1.1
MERGE_MARGIN_BYTES = 1 << 20


class DiskFullError(LaminaError, OSError):
    """The store refuses work that would fill its disk. Nothing stored or buffered is affected."""

    def __init__(self, path: str, message: str) -> None:
        OSError.__init__(self, errno.ENOSPC, message, path)
        self.path, self.message = path, message

    def __str__(self) -> str:
        return f"{self.message} (store {self.path})"


@attrs.frozen
class Watermarks:
    """Refuse writes once `high` of the disk's bytes or inodes are used; accept them again once
    usage is below `low`. Fractions of the file system's capacity."""

    high: float = 0.98
    low: float = 0.95
    interval_s: float = 0.5

    def __attrs_post_init__(self) -> None:
        if not 0 < self.low <= self.high <= 1:
            raise ValueError(
                f"watermarks must satisfy 0 < low <= high <= 1, got low={self.low}, high={self.high}"
            )


def _used(space: DiskSpace) -> tuple[float, float]:
    """Used fractions of bytes and inodes (0 for inodes when the file system has no limit)."""
    b = 1 - space.free_bytes / space.total_bytes if space.total_bytes else 0.0
    i = 1 - space.free_inodes / space.total_inodes if space.total_inodes else 0.0
    return b, i


class DiskGuard:
    """The watermark state of one store (thread-safe)."""

    def __init__(self, fs: FileSystem, path: str, marks: Watermarks | None) -> None:
        self.fs, self.path, self.marks = fs, path, marks
        self._lock = threading.Lock()
        self._refusing = False
        self._checked = -1e18
        self._space: DiskSpace | None = None

    @property
    def refusing(self) -> bool:
        return self._refusing

    def space(self) -> DiskSpace:
        return self.fs.disk_space(self.path)

    def check_write(self) -> None:
        """Raise `DiskFullError` while the disk is above the watermarks (see the module doc)."""
        marks = self.marks
        if marks is None:
            return
        now = time.monotonic()
        with self._lock:
            if not self._refusing and now - self._checked < marks.interval_s:
                return
            self._checked = now
            space = self._space = self.space()
            used_b, used_i = _used(space)
            if self._refusing:
                self._refusing = max(used_b, used_i) >= marks.low
            else:
                self._refusing = max(used_b, used_i) >= marks.high
            refusing = self._refusing
        if refusing:
            what = "bytes" if used_b >= used_i else "inodes"
            raise DiskFullError(
                self.path,
                f"the disk is {max(used_b, used_i):.1%} full ({what}; {space.free_bytes:,} bytes and "
                f"{space.free_inodes:,} inodes free): new writes are refused above the high watermark "
                f"({marks.high:.0%}) until usage is below the low one ({marks.low:.0%}); rows already "
                "written are kept. Free space, or set Store(disk_watermarks=...)",
            )

    def check_merge(self, input_bytes: int, what: str) -> None:
        """Raise `DiskFullError` unless the output of merging `input_bytes` fits now."""
        need = int(input_bytes * MERGE_SPACE_FACTOR) + MERGE_MARGIN_BYTES
        space = self.space()
        if space.free_bytes < need:
            raise DiskFullError(
                self.path,
                f"{what} needs {need:,} bytes free ({input_bytes:,} of inputs plus margin) and the disk "
                f"has {space.free_bytes:,}: not started, nothing written",
            )
        if space.total_inodes and space.free_inodes < 64:
            raise DiskFullError(self.path, f"{what} needs inodes and the disk has {space.free_inodes} left")
