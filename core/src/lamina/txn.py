"""Multi-table transactions: flush several tables (e.g. a trace dataset and its sidx indexes) so
that either every one of their new parts becomes live or none does, across crashes.

Each table has its own manifest (SPEC §5), and no single rename can change two of them. So a
transaction adds one durable record in between, the **intent** (`<store>/txn/<id>.intent`):

0. under the group's lock (which writers append under), every member table is listed and its
   buffer taken, so no write is split between this transaction and a later one;
1. every participating table writes its part (SPEC §5 steps 1-3: data files fsynced, then
   `metadata.json` atomically; the part directory's entry is fsynced in its table directory);
2. the intent is written atomically (tmp, fsync, rename, fsync `txn/`): it names every
   (table, part). **This is the commit point of the transaction;**
3. each table writes its next manifest listing its part (its own commit point, as for a flush);
4. the intent is deleted.
`flush()` returns (the rows are acknowledged) after step 3, so the new parts are also visible.

A crash before step 2 leaves only unlisted part directories, which each table's recovery removes
as uncommitted leftovers (SPEC §6): none of the parts survives. A crash after step 2 leaves the
intent; `recover` runs at open *before any table recovers* and rolls it forward: each named part
missing from its table's manifest is added by a new manifest (the table's own recovery then
validates it like any listed part, and quarantines it if damaged, never deletes it); then the
intent is deleted. Each step is idempotent (an already-listed part is skipped), so a crash during
recovery is safe, and a second recovery finds nothing to do.

A failure in step 3 never undoes the transaction (the intent is durable). A member whose manifest
was not written (ENOSPC, EIO) stays pending in its FlushGroup and the group's next flush writes it
before anything new; only a failed fsync or an uncertain manifest poisons, and reopening completes
the transaction then. The intent is removed only once every member lists its part.

Why the intent comes after every part is published and before any manifest: a manifest written
first could make one table's part live while another's part is still being written, and a crash
then leaves exactly what the transaction must prevent (a trace without its index entries, or an
index pointing at a trace that never became durable).
"""

from __future__ import annotations

import contextlib
import itertools
import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from lamina import names
from lamina.commit import remove_partial, write_manifest
from lamina.errors import (
    CommitUncertainError,
    CorruptManifestError,
    ForeignEntryError,
    LaminaError,
    MissingPartError,
    PoisonedTableError,
    StoreClosedError,
)
from lamina.format.checksum import crc32c
from lamina.format.part_meta import SUPPORTED_VERSIONS, Manifest, PartMeta
from lamina.format.records import RecordError, dump_record, load_record, read_record_file
from lamina.io.durable import TMP_SUFFIX, FsyncFailed, fsync_dir, makedirs_durable, write_atomic
from lamina.io.fs import DIR, FILE, FileSystem
from lamina.log import get_logger

if TYPE_CHECKING:
    from lamina.snapshot import MemRows
    from lamina.store import Store
    from lamina.table import PreparedFlush, Table

INTENT_VERSION = 1
log = get_logger(component="txn")

# Unique among the intents pending at once: recovery removes every intent at open, and the clock
# only grows across restarts.
_txn_ids = itertools.count(time.time_ns())
_ids_lock = threading.Lock()


@attrs.frozen
class IntentPart:
    #: The table directory relative to the store root (`<engine>/<dataset>/<segment>/<shard>`).
    table: str
    part: int
    #: CRC32C of the part's `metadata.json` when the intent was written (None in older intents).
    #: Part IDs restart when retention drops a segment and a write re-creates it, so an intent
    #: whose removal was lost can later name an unrelated uncommitted part with the same ID;
    #: recovery rolls forward only the part the transaction wrote.
    meta_crc: int | None = None


@attrs.frozen
class Intent:
    """`txn/<id>.intent`: the parts a transaction makes live together. Its rename is the commit."""

    format_version: int
    txn_id: int
    created_ns: int
    parts: list[IntentPart]


class CorruptIntentError(LaminaError):
    """A transaction intent does not verify. It was written atomically, so this is damage from
    outside Lamina; opening stops before any table removes the parts it may name."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(
            f"transaction intent {path} is damaged ({detail}); the parts it names cannot be "
            "identified. Move it away to open the store (its parts are then dropped as uncommitted)"
        )


def _next_txn_id() -> int:
    with _ids_lock:
        return next(_txn_ids)


class FlushGroup:
    """(engine, dataset) pairs whose tables are always flushed in one transaction.

    Writers that must land in several of them together (a trace batch and its index entries)
    append under `lock`; a group flush takes every member's buffer under the same lock, so a flush
    never catches one member's rows without the others'.

    Lock order: `lock`, then the members' flush locks (sorted by path). A writer may hold `lock`
    while it writes and flushes (`with group.lock: write(); group.flush()`); a thread holding a
    table's flush lock never waits for `lock`. There is deliberately no group-private flush lock:
    one taken before `lock` deadlocked with such a writer (the members' flush locks already
    serialize group flushes).
    """

    def __init__(self, store: Store, members: Sequence[tuple[str, str]]) -> None:
        self.store = store
        self.members = tuple(dict.fromkeys(members))
        self.lock = threading.RLock()
        #: committed transactions still to complete in memory (see `PendingTxn`)
        self._pending: list[PendingTxn] = []

    def tables(self) -> list[Table]:
        out: list[Table] = []
        for engine, dataset in self.members:
            out += self.store.engine(engine).tables(dataset)
        return out

    @property
    def pending_rows(self) -> int:
        return sum(t.pending_rows for t in self.tables())

    def flush(self) -> list[int]:
        """Flush every member table in one transaction; durable and visible when it returns.
        Returns the new part IDs."""
        return flush_together(self.store.fs, self.store.path, self.tables, self.lock, self._pending)


@attrs.define(eq=False)
class PendingTxn:
    """A transaction whose intent is durable while some members' manifests are not written yet.

    It is committed (the intent says so) and is never undone. A member whose manifest failed
    cleanly (ENOSPC or EIO on the manifest's tmp file: nothing was written) stays in `preps`, and
    the group's next flush writes it before anything new (SPEC §4: a retry after space is freed
    succeeds). `keep_intent` is set once a member is left to recovery instead (poisoned, or closed
    meanwhile): the intent must then survive until the next open rolls it forward."""

    intent_path: str
    preps: list[PreparedFlush]
    #: every member table, to poison if the intent's removal cannot be made durable
    tables: list[Table]
    keep_intent: bool = False


def flush_together(
    fs: FileSystem,
    root: str,
    tables_of: Callable[[], Sequence[Table]],
    capture: threading.RLock,
    pending: list[PendingTxn] | None = None,
) -> list[int]:
    """Flush the tables `tables_of()` lists atomically (see the module docstring).

    `capture` is held while the tables are listed and their buffers taken, so a write appending
    under it (possibly creating a table in a new time segment) is either wholly in this flush or
    wholly after it. Each table's flush lock is held until the transaction is complete.

    `pending` (kept by the caller across flushes) holds committed transactions not yet complete in
    memory; they are finished first, so a table's parts still become live in commit order.
    Returns the IDs of every part this call made live."""
    pending = [] if pending is None else pending
    committed: list[PreparedFlush] = []
    try:
        with contextlib.ExitStack() as locks:
            with capture:
                tables = sorted(tables_of(), key=lambda t: t.path)  # one lock order for every transaction
                unfinished = [p.table for txn in pending for p in txn.preps]
                for t in sorted({id(t): t for t in [*tables, *unfinished]}.values(), key=lambda t: t.path):
                    # a thread holding a flush lock never waits for `capture`: no deadlock
                    locks.enter_context(t.flush_lock)
                taken = _take_buffers(tables)
            try:
                for txn in list(pending):
                    _commit_all(fs, txn, pending, committed)
            except BaseException:
                for t, buf in taken:
                    t.restore_buffer(buf)
                raise
            preps: list[PreparedFlush] = []
            try:
                for t, buf in taken:
                    preps.append(t.write_flush(buf))
                if len(preps) > 1 and preps[0].table.env.before_commit is not None:
                    preps[0].table.env.before_commit()  # the intent is the commit point: own the store
            except BaseException:
                _abort(fs, preps, taken)
                raise
            if len(preps) == 1:  # one table: its manifest alone is atomic, no intent needed
                _commit_single(preps[0])
                committed.append(preps[0])
            elif preps:
                txn = PendingTxn(_write_intent(fs, root, preps, taken), list(preps), [p.table for p in preps])
                _commit_all(fs, txn, pending, committed)
    finally:
        for p in committed:  # counted and announced even when another member failed
            p.table.flushed(p)
    return [p.part_id for p in committed]


def _take_buffers(tables: Sequence[Table]) -> list[tuple[Table, MemRows]]:
    """Take every member's buffer, all or nothing.

    Checking writability first is not enough: retention may close a member, or a concurrent
    merge's fsync failure poison it, between the check and its `take_buffer` (neither holds the
    flush lock). Buffers already taken would then sit on their tables' flushing lists, counted by
    no `pending_rows` and written by no later flush, and be dropped by `close()`: acknowledged
    writes lost. So any failure puts back every buffer already taken."""
    taken: list[tuple[Table, MemRows]] = []
    try:
        for t in tables:  # fail fast, before any buffer moves
            t._check_writable()
        for t in tables:
            if (buf := t.take_buffer()) is not None:
                taken.append((t, buf))
    except BaseException:
        for t, buf in taken:
            t.restore_buffer(buf)
        raise
    return taken


def _commit_single(p: PreparedFlush) -> None:
    """Step 4 of a plain flush (as `Table.flush`): on failure nothing was committed, unless the
    manifest may be durable (CommitUncertainError: the part is kept, the table poisoned)."""
    try:
        p.table.commit_flush(p)
    except BaseException as e:
        p.handle.reader.close()
        p.table._discard_output(e, p.path)
        if not isinstance(e, CommitUncertainError):
            p.table.restore_buffer(p.buf)
        raise
    p.buf.drop()


def _commit_all(
    fs: FileSystem, txn: PendingTxn, pending: list[PendingTxn], committed: list[PreparedFlush]
) -> None:
    """Steps 3-4 after the intent: every member's manifest, then the intent's removal.

    The intent is durable, so the transaction is committed whatever fails here; nothing is undone.
    Only a failed fsync or a manifest that may be durable (CommitUncertainError) poisons a member
    (SPEC §4); such a member, like one closed meanwhile (retention, store close), is left to
    recovery, which rolls the kept intent forward at the next open. Any other failure (ENOSPC...)
    wrote no manifest: the member stays pending in `pending`, its rows still visible to queries,
    and the group's next flush retries it (idempotent: it only adds the part to a manifest)."""
    left: list[PreparedFlush] = []
    fatal: list[BaseException] = []
    failed: list[BaseException] = []
    for p in txn.preps:
        try:
            p.table.commit_flush(p)
        except Exception as e:  # a crash (BaseException) is no failure to handle
            if isinstance(e, (FsyncFailed, PoisonedTableError, StoreClosedError)):
                p.table.poison(e)  # refuse later commits: this table's manifest is behind
                p.handle.reader.close()
                txn.keep_intent = True
                fatal.append(e)
            else:
                left.append(p)
                failed.append(e)
            continue
        p.buf.drop()
        committed.append(p)
    txn.preps = left
    if left and txn not in pending:
        pending.append(txn)
    elif not left and txn in pending:
        pending.remove(txn)
    if fatal:
        raise CommitUncertainError(txn.tables[0].path, fatal[0]) from fatal[0]
    if failed:
        raise failed[0]
    if not txn.keep_intent:
        _remove_intent(fs, txn)


def _remove_intent(fs: FileSystem, txn: PendingTxn) -> None:
    """Step 4. The transaction is complete either way, so the flush still succeeds; but an intent
    whose removal may not be durable (failed fsync of `txn/`) poisons every member (SPEC §4: a
    failed fsync poisons), so no commit happens until the next open settles it."""
    try:
        fs.remove(txn.intent_path)
        fsync_dir(fs, posixpath.dirname(txn.intent_path))
    except FsyncFailed as e:
        log.error("fsync failed removing transaction intent {}; members poisoned: {}", txn.intent_path, e)
        for t in txn.tables:
            t.poison(e)
    except OSError as e:  # complete anyway: the next open finds every part listed and drops it
        log.warning("could not remove transaction intent {}: {}", txn.intent_path, e)


def _abort(fs: FileSystem, preps: Iterable[PreparedFlush], taken: Iterable[tuple[Table, object]]) -> None:
    """Nothing was committed: remove every written part, put every buffer back."""
    for p in preps:
        p.handle.reader.close()
        remove_partial(fs, p.path)
    for t, buf in taken:
        t.restore_buffer(buf)  # type: ignore[arg-type]


def _write_intent(
    fs: FileSystem, root: str, preps: list[PreparedFlush], taken: list[tuple[Table, object]]
) -> str:
    txn_dir = posixpath.join(root, names.TXN_DIR)
    intent = Intent(
        format_version=INTENT_VERSION,
        txn_id=_next_txn_id(),
        created_ns=time.time_ns(),
        parts=[
            IntentPart(
                posixpath.relpath(p.table.path, root), p.part_id, crc32c(dump_record(p.handle.reader.meta))
            )
            for p in preps
        ],
    )
    path = posixpath.join(txn_dir, names.intent_name(intent.txn_id))
    try:
        makedirs_durable(fs, txn_dir)
        write_atomic(fs, path, dump_record(intent))
    except BaseException as e:
        if fs.exists(path):  # renamed into place, then a barrier failed: it may survive a crash
            for p in preps:
                p.table.poison(e)
            raise CommitUncertainError(preps[0].table.path, e) from e
        if isinstance(e, FsyncFailed):
            for p in preps:
                p.table.poison(e)
        _abort(fs, preps, taken)
        raise
    return path


# -- recovery -----------------------------------------------------------------------------------
def recover(fs: FileSystem, root: str) -> int:
    """Roll every pending intent forward; returns how many. Runs at open before any table opens
    (a table's recovery removes part directories its manifest does not list)."""
    txn_dir = posixpath.join(root, names.TXN_DIR)
    kind = fs.kind(txn_dir)
    if kind is None:
        return 0
    if kind != DIR:
        # Ignoring it would drop the intents it may hold (a transaction half committed), and
        # following it would act outside the store: refuse, naming it.
        raise ForeignEntryError(
            txn_dir,
            kind,
            "it is where pending transactions are recorded: replace it with a real directory "
            "holding the same files (move them back into the store), then reopen",
        )
    entries = sorted(fs.listdir(txn_dir))
    done = 0
    changed = durable_intents = False
    for name in entries:
        path = posixpath.join(txn_dir, name)
        entry_kind = fs.kind(path)
        if name.endswith(TMP_SUFFIX) and entry_kind == FILE:  # an intent never renamed into place
            fs.remove(path)
            changed = True
            continue
        if names.parse_intent_name(name) is None or entry_kind != FILE:
            log.warning("foreign entry {} in {} left untouched", name, txn_dir)
            continue
        try:
            intent = load_record(read_record_file(fs, path), Intent, (INTENT_VERSION,))
        except RecordError as e:
            raise CorruptIntentError(path, str(e)) from None
        if not durable_intents:
            # The intent's rename may be in the page cache only (a process killed before the
            # intent's directory fsync). Rolling it forward into one member's manifest, then
            # losing it to a power cut before the other's, would leave the transaction half
            # committed with nothing left to complete it: make it durable first.
            fsync_dir(fs, txn_dir)
            durable_intents = True
        blocked = [ip for ip in intent.parts if not _roll_forward(fs, root, ip)]
        if blocked:
            # Keep the intent, and refuse to open even when rollback is allowed: the table would
            # roll back and remove its (unlisted) transaction part as a leftover while the other
            # members keep theirs. `lamina repair` rebuilds that manifest from the parts on disk
            # (the transaction's part included); the next open then completes the transaction.
            table = posixpath.join(root, blocked[0].table)
            raise CorruptManifestError(
                table,
                f"its newest manifest is damaged and pending transaction {name} names its part "
                f"{names.part_name(blocked[0].part)}; run `lamina repair`, then reopen",
            )
        for ip in intent.parts:
            _settle(fs, posixpath.join(root, ip.table))
        fs.remove(path)
        changed = True
        done += 1
        log.warning("completed transaction {} ({} parts) interrupted by a crash", name, len(intent.parts))
    if changed:
        fsync_dir(fs, txn_dir)
    return done


def _settle(fs: FileSystem, table: str) -> None:
    """Make durable what `_roll_forward` judged a member by, before the intent goes.

    It read the page cache a killed process left: a manifest that already lists the part (or
    lineage showing it merged away) may not be durable yet, nor a quarantine's move into
    corrupt/, nor a retention drop's rename. Removing the intent on their word, then losing them
    to a power cut, would leave that member without the part and nothing to complete it. So the
    table's corrupt/ is fsynced, then its directory (its nearest surviving ancestor if the
    segment was dropped, where the drop renamed it): in that order, as `move_to_corrupt` does, so
    a part's arrival in corrupt/ is never less durable than its absence from the table. Only
    after a crash: no intent, no barrier."""
    cdir = posixpath.join(table, names.CORRUPT_DIR)
    if fs.is_dir(cdir):
        fsync_dir(fs, cdir)
    d = posixpath.normpath(table)
    while not fs.is_dir(d) and d not in ("/", ""):
        d = posixpath.dirname(d)
    fsync_dir(fs, d or "/")


def _roll_forward(fs: FileSystem, root: str, ip: IntentPart) -> bool:
    """Make part `ip.part` listed in its table's newest manifest (idempotent). False when that
    cannot be done (the newest manifest is damaged): the intent must then be kept."""
    table = posixpath.normpath(posixpath.join(root, ip.table))
    if not table.startswith(root.rstrip("/") + "/"):
        raise CorruptIntentError(table, f"table path {ip.table!r} escapes the store")
    if not fs.is_dir(table):
        return True  # the segment was dropped by retention since: nothing left to complete
    epochs = sorted(
        (e for n in fs.listdir(table) if (e := names.parse_manifest_name(n)) is not None), reverse=True
    )
    manifest: Manifest | None = None
    if epochs:
        try:
            manifest = load_record(
                read_record_file(fs, posixpath.join(table, names.manifest_name(epochs[0]))),
                Manifest,
                SUPPORTED_VERSIONS,
            )
        except RecordError:
            # the table's own recovery reports a damaged newest manifest (and refuses to open)
            log.error("cannot complete a transaction in {}: its newest manifest is damaged", table)
            return False
    if manifest is not None and ip.part in manifest.parts:
        return True
    # Merged away is judged before the directory is looked at: a retired input's directory can
    # outlive its merge (a query still held it when the process died, or a power loss undid its
    # removal, which takes no barrier), and rolling it forward would serve its rows twice.
    if _merged_away(fs, table, manifest, ip.part):
        return True
    pname = names.part_name(ip.part)
    if not fs.exists(posixpath.join(table, pname)):
        if fs.exists(posixpath.join(table, names.CORRUPT_DIR, pname)):
            return True  # committed, then quarantined before the intent was removed
        raise MissingPartError(table, pname)
    if ip.meta_crc is not None and _another_part(fs, posixpath.join(table, pname), ip.meta_crc):
        log.warning("stale transaction intent ignored: {} in {} is not the part it committed", pname, table)
        return True  # the table was dropped and re-created since; this part is its own leftover
    parts = sorted({*(manifest.parts if manifest else ()), ip.part})
    write_manifest(
        fs,
        table,
        (epochs[0] if epochs else 0) + 1,
        parts,
        list(manifest.salvaged) if manifest else [],
        max(manifest.next_part_id if manifest else 0, ip.part + 1),
    )
    return True


def _merged_away(fs: FileSystem, table: str, manifest: Manifest | None, part: int) -> bool:
    """True when `part` was committed and then merged away before the intent was removed.

    A listed part holding data as new as `part` (data_seq >= its ID: a flush's seq is its own ID,
    a merge's the largest of its inputs') proves it: such data is `part` itself, merged, or a
    flush that the transaction's flush lock ordered after `part`'s manifest (a failed manifest
    poisons the table, so no later flush commits)."""
    for pid in manifest.parts if manifest else ():
        try:  # an environment error (EMFILE, EIO) fails the open: "not merged" could serve rows twice
            meta = load_record(
                read_record_file(fs, posixpath.join(table, names.part_name(pid), names.METADATA)),
                PartMeta,
                SUPPORTED_VERSIONS,
            )
        except RecordError:
            continue
        if part in meta.lineage or meta.data_seq >= part:
            return True
    return False


def _another_part(fs: FileSystem, part_dir: str, meta_crc: int) -> bool:
    """True when `part_dir` holds a valid part other than the one whose metadata had `meta_crc`.
    A part whose metadata does not verify is not judged here: it is rolled forward and the
    table's recovery quarantines it (never deletes it)."""
    try:
        data = read_record_file(fs, posixpath.join(part_dir, names.METADATA))
        load_record(data, PartMeta, SUPPORTED_VERSIONS)
    except RecordError:
        return False
    return crc32c(data) != meta_crc
