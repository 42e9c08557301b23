"""The one door to the disk.

Every byte Lamina stores goes through a `FileSystem`. Production uses `OSFileSystem`; tests swap in
`SimFS` (io/sim.py), which can lose unsynced data like a power cut, or inject I/O errors. Keeping
the interface this small is what makes that substitution total: engines, the store, flush, merge and
recovery cannot reach the OS any other way (a test scans the source to keep it so).

Paths are plain POSIX strings. Methods raise `OSError` (with errno) on failure, exactly like the OS.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import NamedTuple, Protocol, runtime_checkable


@runtime_checkable
class WritableFile(Protocol):
    """An append-only file opened by `FileSystem.create`."""

    path: str

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append all of `data` (a short write is retried internally or raised as OSError)."""

    def fsync(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Release the handle. Does not imply durability; idempotent."""


@runtime_checkable
class ReadableFile(Protocol):
    """A file opened for positional reads."""

    path: str

    def pread(self, offset: int, size: int) -> bytes:
        """Return up to `size` bytes at `offset`; fewer only at end of file (callers check)."""

    def size(self) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class FileSystem(Protocol):
    """What the store needs of a file system. Every method acts on the named entry itself and
    never follows a symlink there (`lstat` semantics; reads open with `O_NOFOLLOW`): a symlink,
    FIFO, socket or device inside a store is a foreign entry, reported by kind, never opened.
    Directories along the way are resolved by the OS; `ConfinedFS` (io/confined.py) is what
    refuses to mutate through a symlinked directory inside the store."""

    def create(self, path: str) -> WritableFile:
        """Create a new, empty file for appending; FileExistsError if it exists."""

    def open_read(self, path: str) -> ReadableFile:
        """Open a regular file for positional reads; never blocks on a FIFO and never follows a
        symlink: `NotRegularFileError` (or IsADirectoryError) for anything else."""

    def read_file(self, path: str) -> bytes:
        """The whole content of a (small) regular file (same refusals as `open_read`)."""

    def mkdir(self, path: str) -> None:
        """Create one directory; its parent must exist; FileExistsError if it exists."""

    def listdir(self, path: str) -> list[str]:
        """Entry names of a directory, sorted (ENOTDIR if `path` itself is a symlink)."""

    def file_size(self, path: str) -> int: ...

    def exists(self, path: str) -> bool:
        """Whether an entry of any kind exists at `path` (a dangling symlink exists)."""

    def is_dir(self, path: str) -> bool:
        """Whether `path` is a real directory (a symlink to one is not)."""

    def kind(self, path: str) -> str | None:
        """`FILE`, `DIR`, `SYMLINK` or `OTHER` (FIFO, socket, device) for the entry itself, or
        None if there is none."""

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename `src` over `dst` (files or directories)."""

    def remove(self, path: str) -> None:
        """Unlink a file."""

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""

    def fsync_dir(self, path: str) -> None:
        """Make the entries of directory `path` (creates, renames, unlinks) durable."""

    def disk_space(self, path: str) -> DiskSpace:
        """Free and total bytes and inodes of the file system holding `path` (statvfs)."""

    def lock(self, path: str) -> FileLock:
        """Take an exclusive, non-blocking lock on the existing entry `path` (the store directory
        itself: a lock file can be unlinked from under a live writer, and a second writer then
        locks a new file of the same name) for this process; BlockingIOError if another holder
        has it. Released by `FileLock.release()` or on exit."""


class DiskSpace(NamedTuple):
    """What `FileSystem.disk_space` reports. Inode totals are 0 on file systems that have no
    fixed inode table (btrfs): no inode limit is then known."""

    free_bytes: int
    total_bytes: int
    free_inodes: int
    total_inodes: int


#: Entry kinds returned by `FileSystem.kind`.
FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"


class NotRegularFileError(OSError):
    """A FIFO, socket, device or symlink where Lamina expects a regular file. Opening a FIFO for
    reading would block forever and a symlink may lead out of the store, so neither is opened."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", path)
        self.kind = kind


class FileLock(Protocol):
    def release(self) -> None: ...

    def verify(self) -> None:
        """Raise `LockLostError` if the locked path no longer names the locked directory (it
        was moved or replaced under a live writer): another writer may hold the new one."""

    def abandon(self) -> None:
        """Forget the lock without unlocking: in a forked child, whose copy of the descriptor
        shares the parent's lock, unlocking would release the parent's lock too."""


class LockLostError(OSError):
    """The store directory a writer locked is no longer at its path. Committing now could race a
    second writer that locked whatever is there instead, so the writer stops."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ESTALE, "the locked store directory was moved or replaced", path)


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return OTHER


def _open_regular(path: str) -> int:
    """A read descriptor of the regular file at `path`: never follows a symlink (ELOOP becomes
    NotRegularFileError), never blocks on a FIFO (O_NONBLOCK, then checked and refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotRegularFileError(path, SYMLINK) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind_of(mode)
            if kind == DIR:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            raise NotRegularFileError(path, kind)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _OSDirLock:
    def __init__(self, path: str, fd: int) -> None:
        self._path, self._fd = path, fd
        st = os.fstat(fd)
        self._identity = (st.st_dev, st.st_ino)

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def abandon(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # the parent's copy keeps the lock: flock belongs to the open file

    def verify(self) -> None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            raise LockLostError(self._path) from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise LockLostError(self._path)


class _OSWritableFile:
    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self._fd = path, fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Every view is released even when os.write raises (ENOSPC): a live export of the
        # caller's bytearray would make its next resize raise BufferError, masking the ENOSPC.
        with memoryview(data) as whole, whole.cast("B") as view:
            done = 0
            while done < len(view):
                with view[done:] as rest:
                    done += os.write(self._fd, rest)

    def fsync(self) -> None:
        if self._fd < 0:  # os.fsync(-1) raises ValueError, which would slip past `except OSError`
            raise OSError(errno.EBADF, "fsync on a closed file", self.path)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _OSReadableFile:
    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self._fd = path, fd

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class OSFileSystem:
    """The real disk. Thin on purpose: all policy (ordering, fsyncs) lives in io/durable.py."""

    def create(self, path: str) -> WritableFile:
        # O_EXCL never follows a symlink: one at `path` is EEXIST, never a file created elsewhere
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
        return _OSWritableFile(path, fd)

    def open_read(self, path: str) -> ReadableFile:
        return _OSReadableFile(path, _open_regular(path))

    def read_file(self, path: str) -> bytes:
        fd = _open_regular(path)
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def listdir(self, path: str) -> list[str]:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def file_size(self, path: str) -> int:
        return os.lstat(path).st_size

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == DIR

    def kind(self, path: str) -> str | None:
        try:
            return _kind_of(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def disk_space(self, path: str) -> DiskSpace:
        st = os.statvfs(path)
        return DiskSpace(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize, st.f_favail, st.f_files)

    def lock(self, path: str) -> FileLock:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return _OSDirLock(path, fd)
        except BaseException:
            os.close(fd)
            raise

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def absolute(path: str | os.PathLike[str]) -> str:
    """A user-given store path as an absolute POSIX string with symlinks resolved: the store's
    own path may lead through links (`/data -> /mnt/ssd`) by the user's choice, and from there on
    Lamina never follows one (listing and fsyncing use O_NOFOLLOW)."""
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def proves_damage(e: OSError) -> bool:
    """Whether an OS error shows that an entry is not what Lamina wrote: gone, a directory where
    a file belongs (or the reverse), or not a regular file. Everything else (EMFILE, ENOMEM,
    EACCES, EINTR, EIO, ...) says something about the machine, not the data, and must never take
    a part out of service (SPEC §10.9)."""
    return isinstance(e, FileNotFoundError | NotADirectoryError | IsADirectoryError | NotRegularFileError)


def os_identity(path: str) -> tuple[int, int]:
    """(device, inode) of what `path` names on the real disk: the same store reached through two
    spellings of its path (a symlink, a bind mount) is one store."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino)
