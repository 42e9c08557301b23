"""Confinement: Lamina changes nothing outside its store, whatever entries are planted in it.

A symlink inside a store (left by an operator, a backup tool or an attacker with write access to
one directory) must never carry a mutation outside: deleting a leftover "part" that is really a
link would delete the link's target's contents, and a linked `corrupt/` or `txn/` would receive
files elsewhere. The OS follows symlinks in every directory of a path, so the check has to be made
by whoever knows where the store begins. `ConfinedFS` wraps the store's `FileSystem` and, before
every mutating operation on a path below the store root, `lstat`s each directory on the way (and
the entry itself, for operations that would replace or unlink it): a symlink there raises
`SymlinkInStoreError` naming it and the operation does not happen.

Reads pass straight through: the underlying file system already refuses to open a symlink or a
special file as a file (`O_NOFOLLOW`, `NotRegularFileError`), and callers that walk the store
classify entries with `kind()` before acting on them. Paths outside the root (the store
directory's own ancestors, which `makedirs_durable` creates and fsyncs) are the caller's chosen
location and are not checked.

This is a check, not a sandbox: a writer racing Lamina to swap a directory for a symlink between
the `lstat` and the operation is outside the threat model (whoever can do that can write the
store's files directly). What it guarantees is that no entry found in a store directory leads a
Lamina mutation out of it. So a directory, once seen to be one, is remembered until the next
commit (`revalidate`; an `lstat` per level per mutation cost a flush ~10 %), and forgotten at once
when Lamina itself renames or removes it.
"""

from __future__ import annotations

import errno
import posixpath

from lamina.errors import LaminaError
from lamina.io.fs import DIR, SYMLINK, DiskSpace, FileLock, FileSystem, ReadableFile, WritableFile


class SymlinkInStoreError(LaminaError, OSError):
    """A mutation would pass through (or replace) a symlink inside the store. Nothing was done."""

    def __init__(self, path: str, link: str) -> None:
        OSError.__init__(self, errno.ELOOP, "symlink inside the store", path)
        self.path, self.link = path, link

    def __str__(self) -> str:
        return (
            f"refusing to change {self.path}: {self.link} is a symlink inside the store, and Lamina "
            "never writes, renames or deletes through one. Replace it with the real directory or "
            "file (move the target back into the store) or remove it, then retry."
        )


class ConfinedFS:
    """`fs` with every mutation below `root` checked for symlinks (see the module docstring)."""

    def __init__(self, fs: FileSystem, root: str) -> None:
        self.inner = fs
        self.root = posixpath.normpath(root)
        self._prefix = self.root.rstrip("/") + "/"
        self._dirs: set[str] = set()  # directories below the root seen to be real directories

    def _check(self, path: str, *, entry: bool = False) -> None:
        """Raise if a directory between the root and `path` (or, with `entry`, `path` itself)
        is a symlink."""
        p = posixpath.normpath(path)
        if not p.startswith(self._prefix):
            return
        parts = p[len(self._prefix) :].split("/")
        here = self.root
        last = len(parts) - 1
        for i, part in enumerate(parts):
            here = f"{here}/{part}"
            if i == last and not entry:
                return
            if here in self._dirs:
                continue
            kind = self.inner.kind(here)
            if kind == SYMLINK:
                raise SymlinkInStoreError(p, here)
            if kind == DIR and i < last:
                self._dirs.add(here)

    def revalidate(self) -> None:
        """Look at every directory afresh: called at each commit, so a directory replaced by a
        symlink while the store is open is caught by the next commit at the latest."""
        self._dirs = set()

    def _forget(self, path: str) -> None:
        """`path` is being renamed or removed by Lamina: whatever takes its place is looked at
        again."""
        p = posixpath.normpath(path)
        if p in self._dirs:
            pre = p + "/"
            self._dirs = {d for d in self._dirs if d != p and not d.startswith(pre)}

    # -- mutations: checked --------------------------------------------------------------------
    def create(self, path: str) -> WritableFile:
        self._check(path)
        return self.inner.create(path)

    def mkdir(self, path: str) -> None:
        self._check(path)
        self.inner.mkdir(path)

    def replace(self, src: str, dst: str) -> None:
        self._check(src, entry=True)
        self._check(dst, entry=True)
        self._forget(src)
        self._forget(dst)
        self.inner.replace(src, dst)

    def remove(self, path: str) -> None:
        self._check(path, entry=True)
        self.inner.remove(path)

    def rmdir(self, path: str) -> None:
        self._check(path, entry=True)
        self._forget(path)
        self.inner.rmdir(path)

    def fsync_dir(self, path: str) -> None:
        self._check(path, entry=True)
        self.inner.fsync_dir(path)

    def lock(self, path: str) -> FileLock:
        self._check(path, entry=True)
        return self.inner.lock(path)

    # -- reads: the inner file system already never follows the last component ----------------
    def open_read(self, path: str) -> ReadableFile:
        return self.inner.open_read(path)

    def read_file(self, path: str) -> bytes:
        return self.inner.read_file(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def file_size(self, path: str) -> int:
        return self.inner.file_size(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def is_dir(self, path: str) -> bool:
        return self.inner.is_dir(path)

    def kind(self, path: str) -> str | None:
        return self.inner.kind(path)

    def disk_space(self, path: str) -> DiskSpace:
        return self.inner.disk_space(path)

    def __getattr__(self, name: str) -> object:
        # whatever else the wrapped file system offers (SimFS's fixtures and crash states, for
        # the tests that reach them through `store.fs`)
        return getattr(self.inner, name)


def confined(fs: FileSystem, root: str) -> FileSystem:
    """`fs` confined to `root` (an already confined one is re-rooted, never wrapped twice)."""
    if isinstance(fs, ConfinedFS):
        fs = fs.inner
    return ConfinedFS(fs, root)
