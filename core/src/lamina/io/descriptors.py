"""A bounded cache of read descriptors, shared by every part of a store.

A part is read through several files (block index, data files, tag files, sidecars), and keeping
each open for the part's lifetime costs 6-11 descriptors per part: a store of a few hundred parts
then exceeds the default soft limit of 1024, and every later open fails with EMFILE. The cache
keeps at most `capacity` idle descriptors (least recently used closed first), so the number of
parts a store can hold no longer depends on the descriptor limit; reads in progress pin theirs.

On EMFILE/ENFILE the cache closes every idle descriptor it holds and tries once more; if that
fails too, the error propagates (an environment error: the caller reports it, never quarantines).
"""

from __future__ import annotations

import errno
import posixpath
import resource
import threading
from collections import OrderedDict

from lamina.errors import ShortReadError
from lamina.io.fs import FileSystem, ReadableFile

#: Never keep more than this many idle descriptors, whatever the limit.
MAX_CAPACITY = 1024


def default_capacity() -> int:
    """A quarter of the process's soft descriptor limit (the application needs the rest), at
    least 16 and at most `MAX_CAPACITY`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CAPACITY
    return max(16, min(MAX_CAPACITY, soft // 4))


class _Entry:
    __slots__ = ("doomed", "file", "users")

    def __init__(self, file: ReadableFile) -> None:
        self.file, self.users, self.doomed = file, 0, False


class DescriptorCache:
    """Positional reads of files by path, through at most `capacity` idle open descriptors."""

    def __init__(self, fs: FileSystem, capacity: int | None = None) -> None:
        self.fs = fs
        self.capacity = default_capacity() if capacity is None else max(1, capacity)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: directory -> paths cached under it, so closing one part costs its own files only
        self._by_dir: dict[str, set[str]] = {}
        #: descriptors opened / closed by eviction, for metrics and tests
        self.opened = 0
        self.evicted = 0

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._entries)

    def pread_exact(self, path: str, offset: int, size: int) -> bytes:
        """Exactly `size` bytes at `offset` of `path`, or ShortReadError (no silent EOF)."""
        if size == 0:
            return b""
        entry = self._acquire(path)
        try:
            data = entry.file.pread(offset, size)
        except OSError as e:
            if e.filename is not None:
                raise
            # pread(2) names no file: say which one, for the message an operator reads
            raise OSError(e.errno, e.strerror, path) from e
        finally:
            self._release(entry)
        if len(data) != size:
            raise ShortReadError(path, offset, size, len(data))
        return data

    def forget(self, prefix: str) -> None:
        """Close the descriptors of every file under directory `prefix` (a part being closed);
        one still in use is closed when its read ends."""
        done: list[ReadableFile] = []
        with self._lock:
            for path in self._by_dir.pop(posixpath.normpath(prefix), ()):
                entry = self._entries.pop(path)
                if entry.users:
                    entry.doomed = True
                else:
                    done.append(entry.file)
        for f in done:
            f.close()

    def abandon(self) -> None:
        """In a forked child: close this process's copies of every descriptor, without taking the
        lock (another thread of the parent may have held it at the fork; it does not exist here)."""
        self._lock = threading.Lock()
        for entry in self._entries.values():
            entry.file.close()
        self._entries.clear()
        self._by_dir.clear()

    def close(self) -> None:
        """Close every descriptor (one in use is closed when its read ends)."""
        with self._lock:
            dirs = list(self._by_dir)
        for d in dirs:
            self.forget(d)

    # -- internals -------------------------------------------------------------------------
    def _acquire(self, path: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None:
                entry.users += 1
                self._entries.move_to_end(path)
                return entry
        opened = self._open(path)  # outside the lock: an open may be slow
        surplus: list[ReadableFile] = []
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry(opened)
                self._by_dir.setdefault(posixpath.dirname(path), set()).add(path)
            else:  # another reader opened it meanwhile: keep theirs
                surplus.append(opened)
            entry.users += 1
            if len(self._entries) > self.capacity:
                surplus += self._evict_locked(self.capacity)
        for f in surplus:
            f.close()
        return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            if entry.users == 0 and (entry.doomed or len(self._entries) > self.capacity):
                done = self._evict_locked(self.capacity)
                if entry.doomed:
                    done.append(entry.file)
            else:
                return
        for f in done:
            f.close()

    def _evict_locked(self, keep: int) -> list[ReadableFile]:
        """Pop idle entries, oldest first, until at most `keep` remain (busy ones stay)."""
        excess = len(self._entries) - keep
        if excess <= 0:
            return []
        victims = []
        for path, entry in self._entries.items():  # oldest first; usually the first is idle
            if entry.users == 0:
                victims.append(path)
                if len(victims) == excess:
                    break
        out = []
        for path in victims:
            out.append(self._entries.pop(path).file)
            d = posixpath.dirname(path)
            paths = self._by_dir[d]
            paths.discard(path)
            if not paths:
                del self._by_dir[d]
        self.evicted += len(out)
        return out

    def _open(self, path: str) -> ReadableFile:
        try:
            f = self.fs.open_read(path)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            with self._lock:
                idle = self._evict_locked(0)
            for old in idle:
                old.close()
            f = self.fs.open_read(path)  # a second EMFILE propagates: the limit is just too low
        with self._lock:
            self.opened += 1
        return f
