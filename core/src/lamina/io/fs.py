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
from typing import Protocol, runtime_checkable


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
    def create(self, path: str) -> WritableFile:
        """Create a new, empty file for appending; FileExistsError if it exists."""

    def open_read(self, path: str) -> ReadableFile: ...

    def read_file(self, path: str) -> bytes:
        """The whole content of a (small) file."""

    def mkdir(self, path: str) -> None:
        """Create one directory; its parent must exist; FileExistsError if it exists."""

    def listdir(self, path: str) -> list[str]:
        """Entry names of a directory, sorted."""

    def file_size(self, path: str) -> int: ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename `src` over `dst` (files or directories)."""

    def remove(self, path: str) -> None:
        """Unlink a file."""

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""

    def fsync_dir(self, path: str) -> None:
        """Make the entries of directory `path` (creates, renames, unlinks) durable."""

    def lock(self, path: str) -> FileLock:
        """Take an exclusive, non-blocking lock on `path` (created if missing) for this process;
        BlockingIOError if another holder has it. Released by `FileLock.release()` or on exit."""


class FileLock(Protocol):
    def release(self) -> None: ...


class _OSFileLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _OSWritableFile:
    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self._fd = path, fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        return _OSWritableFile(path, fd)

    def open_read(self, path: str) -> ReadableFile:
        return _OSReadableFile(path, os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def file_size(self, path: str) -> int:
        return os.stat(path).st_size

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def lock(self, path: str) -> FileLock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return _OSFileLock(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def absolute(path: str | os.PathLike[str]) -> str:
    """Normalise a user-given store path to an absolute POSIX string (pure path arithmetic)."""
    return os.path.abspath(os.fspath(path))
