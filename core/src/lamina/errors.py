"""Every error Lamina raises on purpose.

Errors are types, raised where a problem is detected and handled in one place (quarantine for
damaged parts, the caller for bad input). Each carries the fields an operator needs, and its message
names them, so a log line or a traceback alone says what broke and where.
"""

from __future__ import annotations

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
    #: The OS refused to read the part (EIO, a directory where a file belongs, ...).
    IO_ERROR = "io_error"


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
        super().__init__(f"store {path} is open in another process (lock {path}/lamina.lock is held)")


class StoreClosedError(LaminaError):
    """The store (or table) was closed."""
