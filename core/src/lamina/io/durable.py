"""Durable write primitives: the only way Lamina makes bytes survive a crash.

The ordering rules live here, once, for every engine:
- a file's data is durable only after `fsync(file)`;
- its name is durable only after `fsync(parent directory)`;
- a rename is atomic, and durable after `fsync(directory)`.
BanyanDB lost parts by skipping the first rule on merge outputs and the third on metadata.json.
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Callable

from lamina.errors import ForeignEntryError
from lamina.io.fs import DIR, FILE, FileSystem, WritableFile

TMP_SUFFIX = ".tmp"
_BUFFER = 256 * 1024


class FsyncFailed(OSError):
    """An fsync failed. The data it covered may be gone even if a retry succeeds, so the caller
    must treat the table as poisoned (PostgreSQL's fsyncgate lesson), never retry."""


class FsyncStats:
    """Counts and times every fsync Lamina issues (exported as metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = {"data": 0, "dir": 0}
        self.seconds = {"data": 0.0, "dir": 0.0}
        self.failures = 0

    def record(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.count[kind] += 1
            self.seconds[kind] += seconds

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1


FSYNC_STATS = FsyncStats()


def _timed_fsync(kind: str, fn: Callable[..., None], *args: str) -> None:
    t0 = time.perf_counter()
    try:
        fn(*args)
    except FsyncFailed:
        FSYNC_STATS.record_failure()
        raise
    except OSError as e:
        FSYNC_STATS.record_failure()
        raise FsyncFailed(e.errno, f"fsync failed: {e.strerror}", e.filename) from e
    FSYNC_STATS.record(kind, time.perf_counter() - t0)


def fsync_dir(fs: FileSystem, path: str) -> None:
    """Make the entries of `path` durable (after a create, rename, unlink or mkdir in it)."""
    _timed_fsync("dir", fs.fsync_dir, path)


class SeqWriter:
    """Buffered append-only writer that knows its offset and is durable once closed.

    `close()` = flush the buffer, fsync, close the handle; any error propagates and the writer is
    left closed (never retry an fsync). Closing twice is a no-op. A writer that was never closed
    successfully must never be published: callers remove the part on error.
    """

    __slots__ = ("_buf", "_closed", "_file", "bytes_written", "path")

    def __init__(self, fs: FileSystem, path: str) -> None:
        self.path = path
        self._file: WritableFile = fs.create(path)
        self._buf = bytearray()
        self._closed = False
        self.bytes_written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data`; returns the offset it starts at (what block metadata records)."""
        if self._closed:
            raise ValueError(f"write to closed SeqWriter {self.path}")
        offset = self.bytes_written
        self._buf += data
        self.bytes_written += len(data)
        if len(self._buf) >= _BUFFER:
            buf, self._buf = self._buf, bytearray()
            self._file.write(buf)
        return offset

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._buf:
                self._file.write(self._buf)
                self._buf = bytearray()
            _timed_fsync("data", self._file.fsync)
        finally:
            self._file.close()

    def abort(self) -> None:
        """Close the handle without making anything durable (the output will be removed).

        The handle is closed first and whatever happens: a descriptor left open on a file that
        is then unlinked keeps its space allocated until the process exits (on a full disk, the
        space a retry needs)."""
        if not self._closed:
            self._closed = True
            try:
                self._file.close()
            finally:
                self._buf = bytearray()  # a new buffer: never resize one a failed write may still export


def write_file_durable(fs: FileSystem, path: str, data: bytes | bytearray | memoryview) -> None:
    """Create `path` with `data` and fsync it (its directory entry is the caller's to sync)."""
    w = SeqWriter(fs, path)
    try:
        w.write(data)
    except BaseException:
        w.abort()
        raise
    w.close()


def write_atomic(
    fs: FileSystem, path: str, data: bytes | bytearray | memoryview, *, sync_dir: bool = True
) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content.

    tmp file -> fsync -> rename -> fsync(directory). A stale tmp from an earlier crash is replaced.
    `sync_dir=False` skips the last step, for a caller whose name nothing depends on until some
    later barrier fsyncs the directory anyway (a crash still leaves the old content or the new,
    never a mix; only which one is open until then).
    """
    tmp = path + TMP_SUFFIX
    if fs.exists(tmp):
        fs.remove(tmp)
    try:
        write_file_durable(fs, tmp, data)
    except BaseException:
        _remove_quietly(fs, tmp)
        raise
    fs.replace(tmp, path)
    if sync_dir:
        fsync_dir(fs, posixpath.dirname(path))


def _remove_quietly(fs: FileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.remove(path)
    except OSError:
        pass


def mkdir_durable(fs: FileSystem, path: str) -> None:
    """Create one directory and make its entry durable in the parent."""
    fs.mkdir(path)
    fsync_dir(fs, posixpath.dirname(path))


def makedirs(fs: FileSystem, path: str) -> None:
    """Create `path` and any missing parents, with no barrier (see `makedirs_durable`)."""
    chain = []
    p = posixpath.normpath(path)
    while p and p not in ("/", ".") and not fs.exists(p):
        chain.append(p)
        p = posixpath.dirname(p)
    for d in reversed(chain):
        fs.mkdir(d)


def makedirs_durable(fs: FileSystem, path: str) -> None:
    """Create `path` and any missing parents, and make every level durable in its parent.

    Existing levels are fsynced too: after a process crash a directory can exist in the page cache
    without its entry being durable, and "it exists" must not be mistaken for "it survives".
    """
    chain = []
    p = posixpath.normpath(path)
    while p and p not in ("/", "."):
        chain.append(p)
        p = posixpath.dirname(p)
    for d in reversed(chain):
        if not fs.exists(d):
            fs.mkdir(d)
        fsync_dir(fs, posixpath.dirname(d) or "/")


def rmtree(fs: FileSystem, path: str) -> None:
    """Remove a directory tree Lamina made (idempotent: a missing path is fine; a crash midway is
    fine). A foreign entry anywhere in it (a symlink, FIFO, socket or device) stops it before
    anything is removed, with `ForeignEntryError` naming the entry: Lamina never deletes what it
    did not make, and never deletes through a symlink. One walk lists the tree; the removals
    then follow it, children before their directory."""
    doomed: list[tuple[str, str]] = []
    _walk_for_removal(fs, path, fs.kind(path), doomed)
    for p, kind in doomed:
        if kind == DIR:
            fs.rmdir(p)
        else:
            fs.remove(p)


def _walk_for_removal(fs: FileSystem, path: str, kind: str | None, out: list[tuple[str, str]]) -> None:
    if kind is None:
        return
    if kind not in (FILE, DIR):
        raise ForeignEntryError(path, kind)
    if kind == DIR:
        for name in fs.listdir(path):
            child = posixpath.join(path, name)
            _walk_for_removal(fs, child, fs.kind(child), out)
    out.append((path, kind))
