"""Every error Lamina raises on purpose.

Errors are types, raised where a problem is detected and handled in one place (quarantine for
damaged parts, the caller for bad input). Each carries the fields an operator needs, and its message
names them, so a log line or a traceback alone says what broke and where.
"""

from __future__ import annotations

import errno
import os
from enum import StrEnum


class LaminaError(Exception):
    """Base class of every error Lamina raises deliberately."""


class CorruptionReason(StrEnum):
    """Why a part could not be trusted. Closed set: it labels a metric and `reason.json`."""

    SHORT_READ = "short_read"
    CHECKSUM = "checksum"
    OFFSET_MISMATCH = "offset_mismatch"
    SIZE_MISMATCH = "size_mismatch"
    METADATA = "metadata"
    MISSING_FILE = "missing_file"
    UNKNOWN_FILE = "unknown_file"
    DECODE = "decode"
    FORMAT_VERSION = "format_version"
    #: A directory where a file belongs, a file where the part's directory belongs (older
    #: Lamina also used it for EIO, which is an environment error, never a reason now).
    IO_ERROR = "io_error"
    #: A symlink, FIFO, socket or device where a part's regular file belongs (never opened).
    NOT_REGULAR = "not_regular_file"


class ShortReadError(LaminaError):
    """A read returned fewer bytes than asked for. There is no silent EOF in Lamina."""

    def __init__(self, file: str, offset: int, wanted: int, got: int) -> None:
        self.file, self.offset, self.wanted, self.got = file, offset, wanted, got
        super().__init__(f"short read of {file}: wanted {wanted} bytes at offset {offset}, got {got}")


class CorruptPartError(LaminaError):
    """A part (or one of its files) failed validation; it must be quarantined, never served.

    `part` is the part directory name (or path), `file` the file inside it, `offset` the byte
    offset where the damage was found (-1 when it concerns the whole file).
    """

    def __init__(
        self,
        part: str,
        file: str,
        offset: int,
        reason: CorruptionReason | str,
        detail: str = "",
        *,
        engine: str = "",
        expected: object = None,
        actual: object = None,
    ) -> None:
        self.part, self.file, self.offset = part, file, offset
        self.reason = CorruptionReason(reason)
        self.detail, self.engine = detail, engine
        self.expected, self.actual = expected, actual
        where = f"{part}/{file}" + (f" at offset {offset}" if offset >= 0 else "")
        extra = f" (expected {expected!r}, got {actual!r})" if expected is not None else ""
        super().__init__(f"corrupt part {where}: {self.reason.value}: {detail}{extra}")

    def with_engine(self, engine: str) -> CorruptPartError:
        self.engine = engine
        return self


class CorruptManifestError(LaminaError):
    """The newest manifest of a table fails to verify.

    Lamina refuses to open rather than silently roll back acknowledged data; `lamina repair`
    rebuilds the manifest from part lineage.
    """

    def __init__(self, path: str, detail: str, *, can_roll_back: bool = True) -> None:
        self.path, self.detail = path, detail
        hint = (
            "Run `lamina repair` to rebuild it from the parts, or open with allow_rollback=True."
            if can_roll_back
            else "No older manifest verifies either, so there is nothing to roll back to: run "
            "`lamina repair` to rebuild it from the parts."
        )
        super().__init__(
            f"newest manifest {path} is damaged ({detail}); refusing to roll back acknowledged data. {hint}"
        )


class MissingPartError(LaminaError):
    """A part listed in the manifest is gone: data was removed outside Lamina."""

    def __init__(self, table: str, part: str) -> None:
        self.table, self.part = table, part
        super().__init__(
            f"part {part} is listed in the manifest of {table} but its directory is missing "
            "(removed outside Lamina); run `lamina repair` to rebuild the manifest"
        )


_HINTS = {
    errno.EMFILE: "raise the open-file limit (`ulimit -n`) or lower Store(max_open_files=...)",
    errno.ENFILE: "the system-wide open-file table is full: close files elsewhere or raise fs.file-max",
    errno.ENOMEM: "the kernel is out of memory: free memory and retry",
    errno.EACCES: "check the owner and mode of the path: the process may not read or write it",
    errno.EPERM: "check the owner, mode and attributes (chattr) of the path",
    errno.EIO: "the device reported an I/O error: check the disk (dmesg, SMART) and retry; "
    "`lamina check --deep` tells damage from a failing device",
    errno.EAGAIN: "the resource is temporarily unavailable: retry",
    errno.EINTR: "the call was interrupted: retry",
    errno.ENOSPC: "the file system is full: free space and retry",
    errno.EDQUOT: "the disk quota is exhausted: free space or raise the quota",
    errno.EROFS: "the file system is read-only: remount it read-write",
}


class EnvironmentIOError(LaminaError, OSError):
    """The OS refused an operation for a reason that says nothing about the data: descriptors,
    memory, permissions, an interrupted call, a failing device. Not damage (SPEC §10.9): the
    operation failed, nothing was quarantined, every part stays in service, and retrying after
    the condition is fixed succeeds. Keeps the errno, so `except OSError` handlers still work."""

    def __init__(self, action: str, cause: OSError) -> None:
        OSError.__init__(self, cause.errno, cause.strerror or str(cause), cause.filename)
        self.action, self.cause = action, cause

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0, str(self.errno))
        what = self.strerror or (os.strerror(self.errno) if self.errno else "error")
        hint = _HINTS.get(self.errno or 0, "fix the condition and retry")
        return (
            f"{self.action}: {code} ({what}) on {self.filename}. An environment error, not damage: "
            f"nothing was quarantined and the data stays in service; {hint}."
        )


class ForeignEntryError(LaminaError, OSError):
    """An entry Lamina did not make (a symlink, FIFO, socket or device, or a directory holding
    one) stands where Lamina would have to delete or rewrite it. Foreign entries are reported,
    never deleted, never written through."""

    def __init__(self, path: str, kind: str, fix: str = "") -> None:
        OSError.__init__(self, errno.EEXIST, f"foreign {kind} inside the store", path)
        self.path, self.kind, self.fix = path, kind, fix

    def __str__(self) -> str:
        fix = self.fix or "move it out of the store (Lamina never deletes what it did not make), then retry"
        return f"{self.path} is a {self.kind} that Lamina did not make: left untouched; {fix}"


class ManifestMissingError(LaminaError):
    """A table holds parts but no manifest at all: every manifest was removed outside Lamina.

    A table's first manifest is durable before its first part directory is created, so this is
    never a crash's doing. Without a manifest every part would look like an uncommitted leftover
    and be deleted; the open refuses instead, and `lamina repair` rebuilds the manifest from the
    parts' lineage."""

    def __init__(self, table: str, parts: list[str]) -> None:
        self.table, self.parts = table, parts
        shown = ", ".join(parts[:5]) + (", ..." if len(parts) > 5 else "")
        super().__init__(
            f"table {table} has no manifest but holds {len(parts)} part(s) ({shown}): every manifest "
            "was removed outside Lamina. Refusing to open it (the parts would be taken for "
            "uncommitted leftovers and deleted); run `lamina repair` to rebuild the manifest"
        )


class MisplacedPartError(LaminaError):
    """A valid part sits in a directory that does not match it: its dataset or segment directory
    was renamed or moved by hand. Serving it there would answer queries wrongly (rows under
    another dataset's name, or skipped by segment pruning), so the open refuses."""

    def __init__(self, table: str, part: str, why: str) -> None:
        self.table, self.part, self.why = table, part, why
        super().__init__(
            f"part {part} of {table} is misplaced: {why}. Its dataset or segment directory was "
            "renamed or moved outside Lamina; move it back to where its rows belong, then reopen"
        )


class PartIdExhaustedError(LaminaError):
    """A table has allocated every 64-bit part ID. Never wrapped (an old ID could come back) and
    never widened (a 17-digit name is not a part name)."""

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(
            f"table {table} has no part IDs left (the next would exceed 0xffffffffffffffff); this "
            "means a damaged or hand-edited manifest: check next_part_id in its newest .snp"
        )


class InvalidInputError(LaminaError, ValueError):
    """A caller passed bad data. Names the field; nothing stored is affected."""

    def __init__(self, field: str, problem: str, *, engine: str = "", row: int | None = None) -> None:
        self.field, self.problem, self.engine, self.row = field, problem, engine, row
        where = f"{engine}." if engine else ""
        at = f" (row {row})" if row is not None else ""
        super().__init__(f"invalid value for {where}{field}{at}: {problem}")


class UnknownEngineError(LaminaError, KeyError):
    """An engine name that no installed plugin registered."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name, self.installed = name, installed
        super().__init__(name)

    def __str__(self) -> str:
        have = ", ".join(sorted(self.installed)) or "none"
        return f"unknown engine {self.name!r}; installed engines: {have}"


class PluginError(LaminaError):
    """A plugin could not be loaded or registered something invalid."""


class DuplicateEngineError(PluginError):
    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.first, self.second = name, first, second
        super().__init__(
            f"engine {name!r} is registered by two distributions: {first} and {second}; "
            "uninstall one or block it with LAMINA_DISABLE_PLUGINS"
        )


class PoisonedTableError(LaminaError):
    """An fsync failed earlier; the table refuses commits until it is reopened.

    After a failed fsync the kernel may have dropped the dirty pages and a retried fsync can report
    success without the data being durable (PostgreSQL's fsyncgate), so retrying is never safe.
    """

    def __init__(self, table: str, cause: BaseException) -> None:
        self.table, self.cause = table, cause
        super().__init__(f"table {table} is poisoned by an earlier fsync failure ({cause}); reopen the store")


class CommitUncertainError(PoisonedTableError):
    """The new manifest was renamed into place but a later barrier failed: the commit may or may not
    survive a crash. Nothing is removed (the committed output must not be deleted); the table is
    poisoned until the store is reopened, and recovery then sees one state or the other."""


class StoreLockedError(LaminaError):
    """Another process has the store open. Two writers would race on manifests and part IDs."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"store {path} is open in another process (it holds the lock on the directory)")


class NotAStoreError(LaminaError):
    """The path is not a Lamina store (no `lamina.json`), and Lamina will not make it one."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"{path} is not a Lamina store: {why}")


class StoreAlreadyOpenError(StoreLockedError):
    """This process already has the store open: use that handle (two handles in one process
    would race on manifests and part IDs just as two processes would)."""

    def __init__(self, path: str) -> None:
        self.path = path
        LaminaError.__init__(
            self, f"store {path} is already open in this process; use the open Store (or close it first)"
        )


class ForkedStoreError(LaminaError):
    """A Store used in a child process forked after it was opened. The child's copy of the
    buffers and of the lock belongs to the parent, which goes on using them."""

    def __init__(self, path: str, owner_pid: int) -> None:
        self.path, self.owner_pid = path, owner_pid
        super().__init__(
            f"store {path} was opened by process {owner_pid}; this process is a fork of it and may not "
            "use that handle (its buffers and lock are the parent's). Open the store after the fork "
            "in the one process that writes, or use multiprocessing's 'spawn' or 'forkserver' start "
            "method (see docs/guide.md, 'Processes')"
        )


class StoreClosedError(LaminaError):
    """The store (or table) was closed."""
