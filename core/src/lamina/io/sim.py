"""SimFS: an in-memory `FileSystem` that can crash, lose unsynced data and inject I/O errors.

Crash-consistency bugs hide in the gap between what a program *sees* (the page cache) and what is
*durable* (on the platter). A real disk only shows that gap when the power actually fails, so the
tests need a file system that models both views explicitly and can be "unplugged" at any point.

The model follows Pebble's MemFS and ALICE:

- Everything is an inode. A file inode holds `data` (what readers see now) and `synced` (its content
  as of its last fsync; b"" until then). A directory inode holds `entries` (name -> inode, now) and
  `synced_entries` (as of its last `fsync_dir`; empty until then). Only the root is born durable.
- Names and bytes are durable independently: `fsync(file)` never makes the file's *name* durable,
  and `fsync_dir(d)` never makes any file's *bytes* durable. That is exactly the rule in
  io/durable.py, and forgetting either half is the bug class this simulator exists to catch.
- A rename moves an inode reference between `entries` dicts, atomically in the current view. It is
  pending, per name, in both directories involved until each is fsynced. This is deliberately more
  pessimistic than ext4 (whose journal commits a whole rename at once): a cross-directory rename
  where only the destination directory was fsynced leaves *both* names after a power cut, and one
  where only the source was fsynced leaves *neither*. Code that fsyncs both directories is correct
  under either model.
- Open handles reference inodes, not names, so they keep working after a rename or unlink
  (like POSIX file descriptors); writes to an unlinked inode simply vanish with it.

Crash points: every mutating operation gets an index (`op_count`, `ops`); `crash_at(n)` makes the
n-th one raise `SimulatedCrash` *instead of* running. The crashed instance then refuses everything,
and `crash_state(...)` / `omission_states()` build fresh SimFS instances for "the disk after the
crash", leaving the crashed instance untouched so several crash models can be taken from it.

The crash models are documented on `SimFS.crash_state`.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from lamina.io.fs import (
    DIR,
    FILE,
    OTHER,
    SYMLINK,
    DiskSpace,
    LockLostError,
    NotRegularFileError,
    ReadableFile,
    WritableFile,
)

__all__ = [
    "CRASH_MODES",
    "INJECTABLE_OPS",
    "MUTATING_OPS",
    "READ_OPS",
    "Fault",
    "SimEntry",
    "SimFS",
    "SimOp",
    "SimulatedCrash",
]

#: Operations that change state: each is counted, logged, and is a crash point.
MUTATING_OPS: frozenset[str] = frozenset(
    {"create", "write", "fsync", "fsync_dir", "mkdir", "replace", "remove", "rmdir"}
)
#: Read operations that can fail by injection but are neither counted nor crash points.
READ_OPS: frozenset[str] = frozenset({"pread", "open_read", "read_file", "listdir"})
INJECTABLE_OPS: frozenset[str] = MUTATING_OPS | READ_OPS
CRASH_MODES: tuple[str, ...] = ("process", "power", "torn", "random", "kill", "interim")


class SimulatedCrash(BaseException):
    """The simulated machine lost power (or the process was killed) at this point.

    A BaseException, not an Exception: product code legitimately catches `Exception` (or `OSError`)
    to clean up and carry on, and a power cut must not be "handled" that way. It has to unwind all
    the way to the test, like KeyboardInterrupt does.
    """


class SimOp(NamedTuple):
    """One logged mutating operation. `detail` is the destination of a replace or a write's size."""

    index: int
    op: str
    path: str
    detail: str = ""


@dataclass(eq=False)
class Fault:
    """An injected I/O error, returned by `SimFS.inject` so a test can inspect or cancel it.

    `fired` counts how often it triggered, which lets a test assert that the code under test really
    reached the faulty operation (a fault that never fires proves nothing).
    """

    op: str
    pattern: str
    err: int
    once: bool = True
    short_write: int | None = None
    fired: int = 0
    active: bool = True

    def cancel(self) -> None:
        """Stop this fault from firing again (other faults are unaffected)."""
        self.active = False

    def matches(self, op: str, paths: tuple[str, ...]) -> bool:
        """Whether this fault applies to `op` on any of `paths` (fnmatch on the full path)."""
        return self.active and self.op == op and any(fnmatch.fnmatchcase(p, self.pattern) for p in paths)


class _File:
    """A file inode: current bytes and the bytes a power cut would leave."""

    __slots__ = ("data", "synced")

    def __init__(self, data: bytes | bytearray = b"", synced: bytes = b"") -> None:
        self.data = bytearray(data)
        self.synced = bytes(synced)


class _Dir:
    """A directory inode: current entries, the entries a power cut would leave, and every value
    each entry took since the directory was last fsynced (`history`, oldest first, None for "no
    entry"; the last is the current one)."""

    __slots__ = ("entries", "history", "synced_entries")

    def __init__(self) -> None:
        self.entries: dict[str, _Node] = {}
        self.synced_entries: dict[str, _Node] = {}
        self.history: dict[str, list[_Node | None]] = {}

    def set(self, name: str, node: _Node | None) -> None:
        """Change entry `name` (None removes it), remembering the value it takes."""
        if node is None:
            del self.entries[name]
        else:
            self.entries[name] = node
        self.history.setdefault(name, []).append(node)

    def values(self, name: str) -> list[_Node | None]:
        """Every value a power cut may leave for `name` (durable first, each once): on a
        journaling file system any fsync commits every metadata change made before it, so an
        entry can come back with a value it held only between two fsyncs of its directory."""
        out: list[_Node | None] = [self.synced_entries.get(name)]
        for node in self.history.get(name, ()):
            if all(node is not o for o in out):
                out.append(node)
        return out


class _Leaf:
    """A symlink (`target` set) or a FIFO/socket/device (`target` None): an entry Lamina must
    never open, follow or delete. Only fixtures make them (`symlink`, `mkfifo`)."""

    __slots__ = ("target",)

    def __init__(self, target: str | None) -> None:
        self.target = target

    @property
    def kind(self) -> str:
        return SYMLINK if self.target is not None else OTHER


class SimEntry(NamedTuple):
    """How `SimFS.tree` shows a symlink (kind "symlink", its target) or a special file."""

    kind: str
    target: str | None = None


_Node = _File | _Dir | _Leaf
_MAX_HOPS = 40


class _Change(NamedTuple):
    """One pending (unsynced) change: directory entries (one, or both names of an atomic rename)
    or a file's bytes."""

    description: str
    entries: tuple[tuple[_Dir, str], ...]
    file: _File | None


def _oserror(code: int, path: str, path2: str | None = None) -> OSError:
    """An OSError exactly as the OS would build it (the constructor picks the subclass by errno)."""
    if path2 is None:
        return OSError(code, os.strerror(code), path)
    return OSError(code, os.strerror(code), path, None, path2)


def _norm(path: str) -> str:
    """Normalise an absolute POSIX path; relative paths are a programming error, not an OSError."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"SimFS paths must be absolute POSIX strings, got {path!r}")
    norm = posixpath.normpath(path)
    # POSIX lets normpath keep exactly two leading slashes; they mean nothing here.
    return "/" + norm.lstrip("/")


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def _cut_points(lo: int, hi: int, grain: int) -> tuple[int, int]:
    """Cut points of an append from `lo` to `hi` bytes at absolute multiples of `grain`.

    Returns (first, n): the candidate kept lengths are `lo` (nothing of the tail) and the `n`
    boundaries first, first + grain, ... that lie in (lo, hi]. Computed arithmetically so a
    byte-granular cut of a large file does not build a list of every length.
    """
    first = (lo // grain + 1) * grain
    last = (hi // grain) * grain
    n = (last - first) // grain + 1 if last >= first else 0
    return first, n


class _SimWritable:
    """Append handle returned by `SimFS.create`; references its inode, not its name."""

    __slots__ = ("_closed", "_fs", "_inode", "path")

    def __init__(self, fs: SimFS, path: str, inode: _File) -> None:
        self._fs, self.path, self._inode = fs, path, inode
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data`. A short-write fault appends only its prefix, then raises (like ENOSPC
        halfway through a write): callers must treat the file as garbage afterwards."""
        fs = self._fs
        with fs._lock:
            fs._check_alive()
            if self._closed:
                raise _oserror(errno.EBADF, self.path)
            buf = bytes(data)
            fault = fs._mutating("write", self.path, f"{len(buf)} bytes")
            if fault is not None:
                if fault.short_write is not None:
                    self._inode.data += buf[: max(0, fault.short_write)]
                raise _oserror(fault.err, self.path)
            fs._room(len(buf), 0, self.path)
            self._inode.data += buf

    def fsync(self) -> None:
        """Make the inode's current bytes durable (its name is a separate matter: fsync_dir)."""
        fs = self._fs
        with fs._lock:
            fs._check_alive()
            if self._closed:
                raise _oserror(errno.EBADF, self.path)
            fs._raise_fault(fs._mutating("fsync", self.path), self.path)
            self._inode.synced = bytes(self._inode.data)

    def close(self) -> None:
        """Release the handle. Never raises, not even after a crash: it runs in `finally` blocks
        that are unwinding a SimulatedCrash, and a second crash there would only mask the first."""
        self._closed = True


class _SimReadable:
    """Positional-read handle returned by `SimFS.open_read`; sees the inode's current bytes."""

    __slots__ = ("_closed", "_fs", "_inode", "path")

    def __init__(self, fs: SimFS, path: str, inode: _File) -> None:
        self._fs, self.path, self._inode = fs, path, inode
        self._closed = False

    def pread(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`; short only at end of file, like pread(2)."""
        fs = self._fs
        with fs._lock:
            fs._reading("pread", self.path)
            if self._closed:
                raise _oserror(errno.EBADF, self.path)
            if offset < 0 or size < 0:
                raise _oserror(errno.EINVAL, self.path)
            return bytes(self._inode.data[offset : offset + size])

    def size(self) -> int:
        fs = self._fs
        with fs._lock:
            fs._check_alive()
            if self._closed:
                raise _oserror(errno.EBADF, self.path)
            return len(self._inode.data)

    def close(self) -> None:
        self._closed = True


class _SimLock:
    def __init__(self, fs: SimFS, path: str, node: _Node) -> None:
        self._fs, self._path, self._node = fs, path, node

    def release(self) -> None:
        with self._fs._lock:
            self._fs._locks.discard(self._path)

    def abandon(self) -> None:
        """A forked child forgets the lock; the parent (this SimFS) keeps holding it."""

    def verify(self) -> None:
        with self._fs._lock:
            try:
                node = self._fs._resolve(self._path, follow=True)
            except OSError:
                node = None
            if node is not self._node:
                raise LockLostError(self._path)


class SimFS:
    """In-memory FileSystem with explicit durability, crash points, crash states and faults.

    Implements the `lamina.io.fs.FileSystem` protocol with the OS's error behaviour (same OSError
    subclasses and errnos as Linux), so product code cannot tell it from `OSFileSystem` until a
    test pulls the plug. Deviation: `open_read` of a directory raises IsADirectoryError at open
    time (Linux fails only at the first read), and `file_size` of a directory is 0.

    All state is guarded by one RLock, because the store runs a background merge thread and the
    simulator must not be the source of a race the product does not have.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._locks: set[str] = set()
        self._root = _Dir()
        #: Number of mutating operations attempted so far (the next one gets this index).
        self.op_count = 0
        #: Log of every mutating operation attempted, in order (including ones that failed).
        self.ops: list[SimOp] = []
        self._crash_at: int | None = None
        self._crashed = False
        self._capacity: tuple[int | None, int | None] = (None, None)
        self._faults: list[Fault] = []
        #: Called as `observer(index, op, path)` right before mutating op `index` runs, i.e. in
        #: exactly the state `crash_at(index)` would leave. A crash explorer takes every crash
        #: state of a workload from ONE run this way instead of re-running it once per crash point;
        #: it may also `inject` a fault, which then applies to this very op.
        self.observer: Callable[[int, str, str], None] | None = None

    # ---------------------------------------------------------------- crash points and faults

    @property
    def crashed(self) -> bool:
        """True once a crash point fired; the instance then refuses every operation."""
        return self._crashed

    def crash_at(self, n: int | None) -> None:
        """Crash when mutating op number `n` (0-based, see `op_count`) is about to run.

        The op is not applied: a crash "at" an op is the state right after the previous one.
        `None` disarms. Running a workload once without a crash point and reading `op_count`
        gives the range to enumerate.
        """
        with self._lock:
            if n is not None and n < 0:
                raise ValueError(f"crash point must be >= 0, got {n}")
            self._crash_at = n

    def inject(
        self,
        op: str,
        path_pattern: str,
        err: int,
        *,
        once: bool = True,
        short_write: int | None = None,
    ) -> Fault:
        """Make `op` on paths matching `path_pattern` (fnmatch on the full path) fail with `err`.

        The failing op is not applied, except a "write" with `short_write=k`, which appends the
        first k bytes and then raises. `once=False` keeps failing until cancelled or cleared,
        which models a dead disk rather than a transient hiccup. For "replace" the pattern is
        matched against both the source and the destination. A failing mutating op is still
        counted and logged: it was attempted, and crash-point indices must not shift depending
        on which faults are armed.
        """
        if op not in INJECTABLE_OPS:
            raise ValueError(f"unknown op {op!r}; injectable ops: {sorted(INJECTABLE_OPS)}")
        if short_write is not None and op != "write":
            raise ValueError("short_write only applies to op='write'")
        fault = Fault(op, path_pattern, err, once, short_write)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Disarm every injected fault."""
        with self._lock:
            for fault in self._faults:
                fault.active = False
            self._faults.clear()

    def _check_alive(self) -> None:
        if self._crashed:
            raise SimulatedCrash("this SimFS has crashed; take a crash_state() to continue")

    def _take_fault(self, op: str, paths: tuple[str, ...]) -> Fault | None:
        for fault in self._faults:
            if fault.matches(op, paths):
                fault.fired += 1
                if fault.once:
                    fault.active = False
                return fault
        return None

    def _mutating(self, op: str, path: str, detail: str = "", *more: str) -> Fault | None:
        """Crash-point check, count and log one mutating op; return the fault to apply, if any."""
        self._check_alive()
        index = self.op_count
        if self.observer is not None:
            self.observer(index, op, path)
        if self._crash_at is not None and index == self._crash_at:
            self._crashed = True
            raise SimulatedCrash(f"simulated crash before op {index}: {op} {path}")
        self.op_count += 1
        self.ops.append(SimOp(index, op, path, detail))
        return self._take_fault(op, (path, *more))

    def _reading(self, op: str, path: str) -> None:
        self._check_alive()
        fault = self._take_fault(op, (path,))
        if fault is not None:
            raise _oserror(fault.err, path)

    @staticmethod
    def _raise_fault(fault: Fault | None, path: str, path2: str | None = None) -> None:
        if fault is not None:
            raise _oserror(fault.err, path, path2)

    # ---------------------------------------------------------------------------- lookups

    def _resolve(self, path: str, *, follow: bool = False, hops: int = 0) -> _Node:
        """The inode at normalised `path` in the current view (ENOENT / ENOTDIR like the OS).

        Symlinks in the directories along the way are followed, as the OS does; the last
        component is followed only with `follow` (open without O_NOFOLLOW, stat, rename's
        parents), so every product operation sees a symlink as itself."""
        node: _Node = self._root
        if path == "/":
            return node
        here = "/"
        parts = path[1:].split("/")
        for i, part in enumerate(parts):
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, path)
            child = node.entries.get(part)
            if child is None:
                raise _oserror(errno.ENOENT, path)
            if isinstance(child, _Leaf) and child.target is not None and (follow or i < len(parts) - 1):
                if hops >= _MAX_HOPS:
                    raise _oserror(errno.ELOOP, path)
                here = _norm(child.target if child.target.startswith("/") else _join(here, child.target))
                child = self._resolve(here, follow=True, hops=hops + 1)
            else:
                here = _join(here, part)
            node = child
        return node

    def _parent(self, path: str) -> tuple[_Dir, str]:
        """The directory that holds (or would hold) normalised `path`, and the entry name."""
        parent = self._resolve(posixpath.dirname(path), follow=True)
        if not isinstance(parent, _Dir):
            raise _oserror(errno.ENOTDIR, path)
        return parent, posixpath.basename(path)

    def _file(self, path: str) -> _File:
        node = self._resolve(path)
        if isinstance(node, _Leaf):
            raise NotRegularFileError(path, node.kind)
        if not isinstance(node, _File):
            raise _oserror(errno.EISDIR, path)
        return node

    # ---------------------------------------------------------------- FileSystem protocol

    def create(self, path: str) -> WritableFile:
        """Create a new, empty file (O_CREAT|O_EXCL). Its name is pending until fsync_dir."""
        p = _norm(path)
        with self._lock:
            self._raise_fault(self._mutating("create", p), p)
            if p == "/":
                raise _oserror(errno.EEXIST, p)
            parent, name = self._parent(p)
            if name in parent.entries:
                raise _oserror(errno.EEXIST, p)
            self._room(0, 1, p)
            inode = _File()
            parent.set(name, inode)
            return _SimWritable(self, p, inode)

    def open_read(self, path: str) -> ReadableFile:
        p = _norm(path)
        with self._lock:
            self._reading("open_read", p)
            return _SimReadable(self, p, self._file(p))

    def read_file(self, path: str) -> bytes:
        p = _norm(path)
        with self._lock:
            self._reading("read_file", p)
            return bytes(self._file(p).data)

    def mkdir(self, path: str) -> None:
        """Create one directory. Its entry in the parent is pending until fsync_dir(parent)."""
        p = _norm(path)
        with self._lock:
            self._raise_fault(self._mutating("mkdir", p), p)
            if p == "/":
                raise _oserror(errno.EEXIST, p)
            parent, name = self._parent(p)
            if name in parent.entries:
                raise _oserror(errno.EEXIST, p)
            self._room(0, 1, p)
            parent.set(name, _Dir())

    def listdir(self, path: str) -> list[str]:
        p = _norm(path)
        with self._lock:
            self._reading("listdir", p)
            node = self._resolve(p)
            if isinstance(node, _Leaf) and node.target is not None:
                raise _oserror(errno.ENOTDIR, p)  # O_DIRECTORY | O_NOFOLLOW, as Linux answers
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, p)
            return sorted(node.entries)

    def file_size(self, path: str) -> int:
        p = _norm(path)
        with self._lock:
            self._check_alive()
            node = self._resolve(p)
            if isinstance(node, _Leaf):
                return len((node.target or "").encode())
            return len(node.data) if isinstance(node, _File) else 0

    def exists(self, path: str) -> bool:
        p = _norm(path)
        with self._lock:
            self._check_alive()
            try:
                self._resolve(p)
            except OSError:
                return False
            return True

    def is_dir(self, path: str) -> bool:
        p = _norm(path)
        with self._lock:
            self._check_alive()
            try:
                return isinstance(self._resolve(p), _Dir)
            except OSError:
                return False

    def kind(self, path: str) -> str | None:
        p = _norm(path)
        with self._lock:
            self._check_alive()
            try:
                node = self._resolve(p)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if isinstance(node, _Leaf):
                return node.kind
            return DIR if isinstance(node, _Dir) else FILE

    def replace(self, src: str, dst: str) -> None:
        """rename(2): atomic in the current view; durable per directory once each is fsynced.

        Files replace files; a directory replaces an absent or empty directory; a directory
        cannot move into its own subtree. Same errnos as Linux.
        """
        s, d = _norm(src), _norm(dst)
        with self._lock:
            self._raise_fault(self._mutating("replace", s, d, d), s, d)
            if s == "/" or d == "/":
                raise _oserror(errno.EBUSY, s, d)
            sparent, sname = self._parent(s)
            node = sparent.entries.get(sname)
            if node is None:
                raise _oserror(errno.ENOENT, s, d)
            dparent, dname = self._parent(d)
            existing = dparent.entries.get(dname)
            if existing is node:
                return  # POSIX: renaming a file onto itself does nothing
            if isinstance(node, _Dir):
                if d.startswith(s + "/"):
                    raise _oserror(errno.EINVAL, s, d)
                if existing is not None:
                    if not isinstance(existing, _Dir):
                        raise _oserror(errno.ENOTDIR, s, d)
                    if existing.entries:
                        raise _oserror(errno.ENOTEMPTY, s, d)
            elif isinstance(existing, _Dir):
                raise _oserror(errno.EISDIR, s, d)
            sparent.set(sname, None)
            dparent.set(dname, node)

    def remove(self, path: str) -> None:
        """unlink(2). Open handles keep the inode; the removal is pending until fsync_dir."""
        p = _norm(path)
        with self._lock:
            self._raise_fault(self._mutating("remove", p), p)
            if p == "/":
                raise _oserror(errno.EISDIR, p)
            parent, name = self._parent(p)
            node = parent.entries.get(name)
            if node is None:
                raise _oserror(errno.ENOENT, p)
            if isinstance(node, _Dir):
                raise _oserror(errno.EISDIR, p)
            parent.set(name, None)

    def rmdir(self, path: str) -> None:
        p = _norm(path)
        with self._lock:
            self._raise_fault(self._mutating("rmdir", p), p)
            if p == "/":
                raise _oserror(errno.EBUSY, p)
            parent, name = self._parent(p)
            node = parent.entries.get(name)
            if node is None:
                raise _oserror(errno.ENOENT, p)
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, p)
            if node.entries:
                raise _oserror(errno.ENOTEMPTY, p)
            parent.set(name, None)

    def fsync_dir(self, path: str) -> None:
        """Make this directory's entries durable, all of them and only them (not file bytes,
        not subdirectories' entries, not the directory's own name in its parent)."""
        p = _norm(path)
        with self._lock:
            self._raise_fault(self._mutating("fsync_dir", p), p)
            node = self._resolve(p)
            if isinstance(node, _Leaf) and node.target is not None:
                raise _oserror(errno.ENOTDIR, p)  # O_DIRECTORY | O_NOFOLLOW, as Linux answers
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, p)
            node.synced_entries = dict(node.entries)
            node.history = {}

    # ------------------------------------------------------------------------ crash states

    def set_capacity(self, nbytes: int | None = None, inodes: int | None = None) -> None:
        """Give the simulated disk a size: a write past `nbytes` of file data (current view) or a
        create/mkdir past `inodes` entries fails with ENOSPC, as a full disk or a full inode table
        does, and `disk_space` reports what is left. None = unlimited (the default)."""
        with self._lock:
            self._capacity = (nbytes, inodes)

    def _usage(self) -> tuple[int, int]:
        """(bytes of file data, inodes) reachable in the current view."""
        nbytes = inodes = 0
        seen: set[int] = set()
        stack: list[_Node] = [self._root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            inodes += 1
            if isinstance(node, _File):
                nbytes += len(node.data)
            elif isinstance(node, _Dir):
                stack.extend(node.entries.values())
        return nbytes, inodes

    def _room(self, nbytes: int, inodes: int, path: str) -> None:
        cap_bytes, cap_inodes = self._capacity
        if cap_bytes is None and cap_inodes is None:
            return
        used_bytes, used_inodes = self._usage()
        if (cap_bytes is not None and used_bytes + nbytes > cap_bytes) or (
            cap_inodes is not None and used_inodes + inodes > cap_inodes
        ):
            raise _oserror(errno.ENOSPC, path)

    def disk_space(self, path: str) -> DiskSpace:
        with self._lock:
            self._check_alive()
            cap_bytes, cap_inodes = self._capacity
            used_bytes, used_inodes = self._usage()
            total_bytes = 2**50 if cap_bytes is None else cap_bytes
            total_inodes = 2**32 if cap_inodes is None else cap_inodes
            return DiskSpace(
                max(0, total_bytes - used_bytes),
                total_bytes,
                max(0, total_inodes - used_inodes),
                total_inodes,
            )

    def lock(self, path: str) -> _SimLock:
        """An exclusive lock on an existing entry within this SimFS (a crash state starts with
        none held, as a dead process holds no flock)."""
        p = _norm(path)
        with self._lock:
            self._check_alive()
            node = self._resolve(p, follow=True)
            if p in self._locks:
                raise BlockingIOError(errno.EWOULDBLOCK, "lock is held", p)
            self._locks.add(p)
        return _SimLock(self, p, node)

    def crash_state(
        self,
        mode: str = "power",
        *,
        seed: int | None = None,
        torn: int | None = None,
        atomic_renames: bool = False,
    ) -> SimFS:
        """A new SimFS holding what the disk would contain after a crash now; self is untouched.

        Except for "kill" (below), the result is fully durable (its synced state equals its
        current state). It has no open handles, no faults, no crash point and a zero op counter:
        it is "the machine rebooted".
        Only names reachable from the root survive; an inode reachable under two names (possible
        after a partially durable rename) becomes a hard link, and a directory reachable twice
        keeps only its first occurrence in sorted depth-first order.

        Modes:
        - "process": a process kill. The page cache survives, so the current state survives in
          full, pending or not.
        - "power": strict power loss. Only durable state survives: the tree is walked through
          `synced_entries` from the root, and each file holds its `synced` bytes.
        - "torn": "power", plus torn appends. For a file whose current bytes extend its synced
          bytes (an unsynced append), part of the append survives, cut at a sector boundary: an
          absolute file offset that is a multiple of `torn` (default 512; use 4096 for 4 KiB
          sectors). Without `seed`, every whole sector of the append is kept and only the final
          partial sector is lost. With `seed`, the number of kept sectors is drawn uniformly from
          0..all, and with probability 1/2 the unsynced bytes of the last kept sector read as
          zeros (its size was journaled but its data block never written). Synced bytes are never
          altered. Files that were overwritten rather than appended keep their synced bytes.
        - "random": a seeded random subset of pending changes. Each directory entry that differs
          from its durable version (compared per name: a create, unlink, or one side of a rename)
          is independently applied or not with probability 1/2, and each unsynced append keeps a
          random prefix: nothing (p=1/4), all of it (p=1/4) or a uniform cut (p=1/2), at byte
          granularity or at multiples of `torn` if given. Content never drops below `synced`.
          `atomic_renames=True` draws once for both names of a rename (see `omission_states`).
        - "interim": "random", plus what ordered journaling adds (ext4, XFS; found by the real
          power cuts of `lamina.testing.kernel_cut`): any fsync commits every metadata change
          made before it, so an entry can come back with a value it held only *between* two
          fsyncs of its directory (a `x.tmp` whose fsync committed its name, beside the old `x`
          whose rename was lost; a part directory removed, then re-created under the same name,
          coming back absent). Each entry not in a pending rename independently takes one of
          its durable, interim or current values (`_Dir.values`); renames stay atomic.
        - "kill": a process kill on a machine that keeps running. Like "process" the current
          state survives in full, but what was pending stays pending: the result is NOT durable,
          so a power loss later (during the recovery that runs on it, say) can still lose what
          the killed process never fsynced. Recovery must not act on such state as if it were
          durable; "process" cannot show that, since it makes everything durable.
        `seed=None` means seed 0 for "random", so every crash state is reproducible.
        """
        if mode not in CRASH_MODES:
            raise ValueError(f"unknown crash mode {mode!r}; expected one of {CRASH_MODES}")
        if torn is not None and torn <= 0:
            raise ValueError(f"torn must be a positive sector size, got {torn}")
        with self._lock:
            if mode == "process":
                return self._materialize(lambda d: d.entries, lambda f: bytes(f.data))
            if mode == "kill":
                return self._copy()
            if mode == "power":
                return self._materialize(lambda d: d.synced_entries, lambda f: f.synced)
            if mode == "torn":
                rng = random.Random(seed) if seed is not None else None
                tear = torn or 512
                return self._materialize(lambda d: d.synced_entries, lambda f: _torn_content(f, tear, rng))
            rng = random.Random(0 if seed is None else seed)
            return self._random_state(rng, torn or 1, atomic_renames, interim=mode == "interim")

    def _random_state(
        self, rng: random.Random, grain: int, atomic_renames: bool = False, *, interim: bool = False
    ) -> SimFS:
        chosen: dict[int, dict[str, _Node]] = {}
        groups = self._rename_groups() if atomic_renames else {}
        decided: dict[int, bool] = {}

        def applied(d: _Dir, name: str) -> bool:
            group = groups.get((id(d), name))
            if group is None:
                return rng.random() < 0.5
            if group not in decided:  # both names of a rename share one draw
                decided[group] = rng.random() < 0.5
            return decided[group]

        def entries_of(d: _Dir) -> dict[str, _Node]:
            got = chosen.get(id(d))
            if got is None:
                got = dict(d.synced_entries)
                for name in sorted(set(d.entries) | set(d.synced_entries) | set(d.history)):
                    cur = d.entries.get(name)
                    if interim and (id(d), name) not in groups:
                        values = d.values(name)
                        pick = values[rng.randrange(len(values))] if len(values) > 1 else values[0]
                    elif cur is d.synced_entries.get(name) or not applied(d, name):
                        continue
                    else:
                        pick = cur
                    if pick is None:
                        got.pop(name, None)
                    else:
                        got[name] = pick
                chosen[id(d)] = got
            return got

        return self._materialize(entries_of, lambda f: _random_content(f, grain, rng))

    def omission_states(self, *, atomic_renames: bool = False) -> Iterator[tuple[str, SimFS]]:
        """ALICE-style single omission: the "process" state minus exactly one pending change.

        Yields (description, state) for each change listed by `pending()`, in the same order
        and with the same description: a directory entry reverted to its durable value (which
        may resurrect an unlinked file or drop a new one), or a file's bytes reverted to its
        synced bytes. A protocol that is correct only if some durable write is *ordered* before
        another shows up here, even when every power-loss state looks fine.

        `atomic_renames=True` keeps both names of a pending rename together (omitted as one
        change), which is SPEC §11's failure model ("renames atomic", as on ext4 and xfs);
        the default treats each directory separately, the simulator's pessimistic model.
        """
        with self._lock:
            changes = self._changes(atomic_renames)
        for change in changes:
            with self._lock:
                state = self._omit(change)
            yield change.description, state

    def _omit(self, change: _Change) -> SimFS:
        target_file = change.file
        targets: dict[int, list[str]] = {}
        for d, name in change.entries:
            targets.setdefault(id(d), []).append(name)

        def entries_of(d: _Dir) -> dict[str, _Node]:
            names = targets.get(id(d))
            if names is None:
                return d.entries
            entries = dict(d.entries)
            for target_name in names:
                old = d.synced_entries.get(target_name)
                if old is None:
                    entries.pop(target_name, None)
                else:
                    entries[target_name] = old
            return entries

        def content_of(f: _File) -> bytes:
            return f.synced if f is target_file else bytes(f.data)

        return self._materialize(entries_of, content_of)

    def _copy(self) -> SimFS:
        """A copy of both views (current and durable) of every inode reachable from the root
        through either view, inodes shared between names staying shared; no handles, locks,
        faults or crash point."""
        out = SimFS()
        memo: dict[int, _Node] = {id(self._root): out._root}

        def copy(node: _Node) -> _Node:
            new = memo.get(id(node))
            if new is not None:
                return new
            if isinstance(node, _File):
                new = memo[id(node)] = _File(node.data, node.synced)
                return new
            if isinstance(node, _Leaf):
                new = memo[id(node)] = _Leaf(node.target)
                return new
            new_dir = _Dir()
            memo[id(node)] = new_dir
            fill(node, new_dir)
            return new_dir

        def fill(src: _Dir, dst: _Dir) -> None:
            dst.entries = {name: copy(n) for name, n in src.entries.items()}
            dst.synced_entries = {name: copy(n) for name, n in src.synced_entries.items()}
            dst.history = {
                name: [None if n is None else copy(n) for n in values] for name, values in src.history.items()
            }

        fill(self._root, out._root)
        return out

    def _materialize(
        self,
        entries_of: Callable[[_Dir], dict[str, _Node]],
        content_of: Callable[[_File], bytes],
    ) -> SimFS:
        """Build a fresh, fully durable SimFS from a view of this one.

        The walk is sorted depth-first so that seeded random choices made inside the callbacks
        are reproducible. Directory inodes are placed at most once, which also rules out cycles
        (a per-directory durability model can produce one from two partially durable renames).
        """
        out = SimFS()
        files: dict[int, _File] = {}
        placed: set[int] = {id(self._root)}

        def build(src: _Dir, dst: _Dir) -> None:
            entries = entries_of(src)
            for name in sorted(entries):
                node = entries[name]
                new: _Node
                if isinstance(node, _File):
                    copy = files.get(id(node))
                    if copy is None:
                        content = content_of(node)
                        copy = files[id(node)] = _File(content, content)
                    new = copy
                elif isinstance(node, _Leaf):
                    new = _Leaf(node.target)
                else:
                    if id(node) in placed:
                        continue
                    placed.add(id(node))
                    new = _Dir()
                    build(node, new)
                dst.entries[name] = new
                dst.synced_entries[name] = new

        build(self._root, out._root)
        return out

    # -------------------------------------------------------------------- test helpers

    def _changes(self, atomic_renames: bool = False) -> list[_Change]:
        """Every pending change reachable in the current tree, in sorted depth-first order
        (with `atomic_renames`, the two names of a rename as one change, at the first one)."""
        changes: list[_Change] = []
        groups = self._rename_groups() if atomic_renames else {}
        grouped: dict[int, int] = {}  # group -> index in changes

        def walk(d: _Dir, prefix: str) -> None:
            for name in sorted(set(d.entries) | set(d.synced_entries)):
                cur, old = d.entries.get(name), d.synced_entries.get(name)
                path = _join(prefix, name)
                if cur is not old:
                    what = "added" if old is None else "removed" if cur is None else "replaced"
                    desc = f"entry {path}: {what}"
                    group = groups.get((id(d), name))
                    if group is not None and group in grouped:
                        i = grouped[group]
                        first = changes[i]
                        changes[i] = _Change(
                            f"{first.description} + {desc}", (*first.entries, (d, name)), None
                        )
                    else:
                        if group is not None:
                            grouped[group] = len(changes)
                        changes.append(_Change(desc, ((d, name),), None))
                if isinstance(cur, _File) and cur.data != cur.synced:
                    desc = f"data {path}: {len(cur.synced)} bytes durable, {len(cur.data)} bytes current"
                    changes.append(_Change(desc, (), cur))
                elif isinstance(cur, _Dir):
                    walk(cur, path)

        walk(self._root, "/")
        return changes

    def _rename_groups(self) -> dict[tuple[int, str], int]:
        """Pending entry changes that are the two names of one rename: (id(dir), name) -> group.

        A rename shows as the inode's durable name gone (or replaced) in one place and a new name
        pointing at it in another; pairing them by inode lets a crash model keep renames atomic.
        """
        removed: dict[int, tuple[int, str]] = {}
        added: dict[int, tuple[int, str]] = {}

        def walk(d: _Dir) -> None:
            for name in set(d.entries) | set(d.synced_entries):
                cur, old = d.entries.get(name), d.synced_entries.get(name)
                if cur is not old:
                    if old is not None:
                        removed[id(old)] = (id(d), name)
                    if cur is not None:
                        added[id(cur)] = (id(d), name)
                if isinstance(cur, _Dir):
                    walk(cur)

        walk(self._root)
        groups: dict[tuple[int, str], int] = {}
        for n, inode in enumerate(sorted(set(removed) & set(added))):
            groups[removed[inode]] = groups[added[inode]] = n
        return groups

    def pending(self) -> list[str]:
        """Human-readable list of the changes a power cut would lose right now.

        "entry P: added|removed|replaced" for a directory entry that differs from its durable
        version, "data P: N bytes durable, M bytes current" for a file with unsynced bytes.
        Empty means a power cut now would lose nothing.
        """
        with self._lock:
            return [c.description for c in self._changes()]

    def tree(self) -> dict[str, bytes | SimEntry | None]:
        """Every path in the current view (the root is implied) -> file bytes, None for a
        directory, a `SimEntry` for a symlink or special file. Comparing trees is how tests
        state "this is exactly what survived"."""
        out: dict[str, bytes | SimEntry | None] = {}

        def walk(d: _Dir, prefix: str) -> None:
            for name in sorted(d.entries):
                node, path = d.entries[name], _join(prefix, name)
                if isinstance(node, _File):
                    out[path] = bytes(node.data)
                elif isinstance(node, _Leaf):
                    out[path] = SimEntry(node.kind, node.target)
                else:
                    out[path] = None
                    walk(node, path)

        with self._lock:
            walk(self._root, "/")
        return out

    def makedirs(self, path: str) -> None:
        """Fixture builder: create `path` and its parents, every name durable at once.

        Not an op (not counted, no faults, no crash point): fixtures describe the disk *before*
        the workload under test, and must not shift its crash-point indices.
        """
        p = _norm(path)
        with self._lock:
            self._check_alive()
            node = self._root
            if p == "/":
                return
            for part in p[1:].split("/"):
                child = node.entries.get(part)
                if child is None:
                    child = _Dir()
                    node.entries[part] = child
                    node.history.pop(part, None)
                elif not isinstance(child, _Dir):
                    raise _oserror(errno.ENOTDIR, p)
                node.synced_entries[part] = child
                node = child

    def write_file(self, path: str, data: bytes | bytearray | memoryview) -> None:
        """Fixture builder: a durable file with `data` (parents created durably, an existing
        file replaced by a new inode so open handles are undisturbed). Not an op."""
        p = _norm(path)
        if p == "/":
            raise _oserror(errno.EISDIR, p)
        content = bytes(data)
        with self._lock:
            self.makedirs(posixpath.dirname(p))
            parent, name = self._parent(p)
            if isinstance(parent.entries.get(name), _Dir):
                raise _oserror(errno.EISDIR, p)
            inode = _File(content, content)
            parent.entries[name] = inode
            parent.synced_entries[name] = inode
            parent.history.pop(name, None)

    def symlink(self, target: str, path: str) -> None:
        """Fixture builder: a durable symlink at `path` pointing to `target` (absolute, or
        relative to the link's directory), as an operator or a backup tool might leave one inside
        a store. Not an op."""
        self._leaf(path, _Leaf(target))

    def mkfifo(self, path: str) -> None:
        """Fixture builder: a durable FIFO (any special file) at `path`. Not an op."""
        self._leaf(path, _Leaf(None))

    def _leaf(self, path: str, leaf: _Leaf) -> None:
        p = _norm(path)
        with self._lock:
            self.makedirs(posixpath.dirname(p))
            parent, name = self._parent(p)
            if name in parent.entries:
                raise _oserror(errno.EEXIST, p)
            parent.entries[name] = parent.synced_entries[name] = leaf

    def corrupt(self, path: str, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Overwrite bytes of an existing file in place, like bit rot or a bad sector.

        The damage is on the medium, so it applies to the current bytes and, where they overlap,
        to the durable bytes too: it survives every crash model. Not an op.
        """
        p = _norm(path)
        patch = bytes(data)
        with self._lock:
            self._check_alive()
            inode = self._file(p)
            if offset < 0 or offset + len(patch) > len(inode.data):
                raise ValueError(
                    f"corrupt({p!r}, {offset}, {len(patch)} bytes) is outside the file "
                    f"({len(inode.data)} bytes)"
                )
            inode.data[offset : offset + len(patch)] = patch
            synced = bytearray(inode.synced)
            end = min(len(synced), offset + len(patch))
            if offset < end:
                synced[offset:end] = patch[: end - offset]
                inode.synced = bytes(synced)

    def truncate(self, path: str, size: int) -> None:
        """Cut (or zero-extend) an existing file to `size` bytes, durably, like a lost tail.

        A fully synced file stays fully synced; otherwise its durable bytes are cut to `size`
        too (never extended), so the unsynced part stays unsynced. Not an op.
        """
        p = _norm(path)
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        with self._lock:
            self._check_alive()
            inode = self._file(p)
            was_synced = inode.data == inode.synced
            if size <= len(inode.data):
                del inode.data[size:]
            else:
                inode.data += bytes(size - len(inode.data))
            inode.synced = bytes(inode.data) if was_synced else inode.synced[:size]


def _append_tail(f: _File) -> tuple[bytes, int, int] | None:
    """(data, lo, hi) if the file's current bytes extend its synced bytes, else None."""
    data = bytes(f.data)
    if len(data) <= len(f.synced) or not data.startswith(f.synced):
        return None
    return data, len(f.synced), len(data)


def _torn_content(f: _File, tear: int, rng: random.Random | None) -> bytes:
    """Content after a torn append (see SimFS.crash_state, mode "torn")."""
    tail = _append_tail(f)
    if tail is None:
        return f.synced
    data, lo, hi = tail
    first, n = _cut_points(lo, hi, tear)
    if rng is None:
        return data[: first + (n - 1) * tear] if n else f.synced
    k = rng.randrange(n + 1)
    if k == 0:
        return f.synced
    keep = first + (k - 1) * tear
    out = bytearray(data[:keep])
    if rng.random() < 0.5:
        start = max(lo, keep - tear)
        out[start:keep] = bytes(keep - start)
    return bytes(out)


def _random_content(f: _File, grain: int, rng: random.Random) -> bytes:
    """Content after a random partial append (see SimFS.crash_state, mode "random")."""
    tail = _append_tail(f)
    if tail is None:
        return f.synced
    data, lo, hi = tail
    first, n = _cut_points(lo, hi, grain)
    r = rng.random()
    if n == 0 or r < 0.25:
        return f.synced
    k = n if r < 0.5 else rng.randrange(n + 1)
    return data[: first + (k - 1) * grain] if k else f.synced
