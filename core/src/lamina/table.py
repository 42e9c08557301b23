"""One table: a (dataset, time segment, shard) of one engine, i.e. one directory of parts.

The table owns the write buffer, the memory-part view of it, the live part set (its manifest),
flush, merge execution, quarantine and recovery. Every change of the live set goes through
`_commit`, under one lock (the "introducer"), and is durable before it is visible.
"""

from __future__ import annotations

import itertools
import posixpath
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from lamina import names
from lamina.commit import DirSink, prune_manifests, publish, remove_partial, write_manifest, write_mem_part
from lamina.disk import DiskGuard
from lamina.engine import Engine, keep_all_rows
from lamina.errors import (
    CommitUncertainError,
    CorruptionReason,
    CorruptManifestError,
    CorruptPartError,
    EnvironmentIOError,
    ForeignEntryError,
    LaminaError,
    ManifestMissingError,
    MisplacedPartError,
    MissingPartError,
    PartIdExhaustedError,
    PoisonedTableError,
    StoreClosedError,
)
from lamina.format.compression import ZstdDict
from lamina.format.part_meta import MAX_PART_ID, SUPPORTED_VERSIONS, Manifest, PartMeta
from lamina.format.part_reader import DirSource, MemSource, PartReader, os_error
from lamina.format.part_writer import MemSink, PartWriter, block_bounds, key_of, tags_for_rows
from lamina.format.records import RecordError, load_record, read_record_file
from lamina.format.rows import Rows, concat, row_sizes, rows_len, take
from lamina.io.descriptors import DescriptorCache
from lamina.io.durable import TMP_SUFFIX, FsyncFailed, fsync_dir, makedirs_durable, rmtree
from lamina.io.fs import DIR, FILE, FileSystem
from lamina.log import get_logger
from lamina.merge.merger import merge_parts
from lamina.metrics import Metrics
from lamina.quarantine import move_to_corrupt, reason_record, write_reason
from lamina.schema import ColumnKind, FileLayout
from lamina.snapshot import MemRows, PartHandle, Snapshot


@attrs.frozen
class PartInfo:
    """What a merge policy sees of a part."""

    part_id: int
    size: int
    rows: int
    level: int
    created_ns: int


@attrs.frozen
class PreparedFlush:
    """A flushed part written to disk (SPEC §5 steps 1-3) but not yet in any manifest."""

    table: Table
    buf: MemRows
    handle: PartHandle
    path: str

    @property
    def part_id(self) -> int:
        return self.handle.part_id


@attrs.define
class TableEnv:
    """Everything a table needs from its store."""

    fs: FileSystem
    engine: Engine
    layout: FileLayout
    metrics: Metrics
    hook: Any  # pluggy hook relay
    allow_rollback: bool = False
    threads: int = 2
    #: The store's shared read descriptors (io/descriptors.py); a private one when None.
    descriptors: DescriptorCache | None = None
    #: Checks that a merge's output fits on the disk before it starts (disk.py).
    disk: DiskGuard | None = None
    #: Called before every write: raises if this process may not use the table (a fork).
    guard: Callable[[], None] | None = None
    #: Called before a flush or merge writes, before every commit point and every deletion:
    #: raises if this handle may no longer write (the store's lock was lost, or the process is a
    #: fork of the one that opened it), and has confinement look at directories afresh.
    before_commit: Callable[[], None] | None = None
    #: Salvage every part right after it is quarantined (salvage.py).
    auto_salvage: bool = False


def sort_rows(engine: Engine, rows: Rows) -> tuple[Rows, list[bytes]]:
    """Stable sort by the engine's sort key; returns sorted rows and their block keys."""
    schema = engine.schema
    n = rows_len(rows)
    keycol = rows[schema.block_key]
    if schema.column(schema.block_key).kind is ColumnKind.INT64:
        keys_sortable: Any = keycol
    else:
        # rank bytes keys (exact lexicographic order, no numpy 'S' NUL-stripping)
        uniq = sorted(set(keycol))
        rank = {k: i for i, k in enumerate(uniq)}
        keys_sortable = np.fromiter((rank[k] for k in keycol), dtype=np.int64, count=n)
    # np.lexsort sorts by the last key first; it is stable.
    cols = [rows[c] for c in reversed(schema.sort_key[1:])] + [keys_sortable]
    order = np.lexsort(cols) if n else np.arange(0)
    out = take(rows, order)
    keys = [key_of(schema, k) for k in out[schema.block_key]]
    return out, keys


def misplacement(meta: PartMeta, dataset: str, segment_start: int, interval_ns: int) -> str | None:
    """Why a valid part does not belong in the table of (`dataset`, segment starting at
    `segment_start`), or None: one rule for what open refuses and `lamina check` reports."""
    end = segment_start + interval_ns
    if meta.dataset != dataset:
        return f"its rows belong to dataset {meta.dataset!r}, not {dataset!r}"
    if meta.rows and not segment_start <= meta.min_ts <= meta.max_ts < end:
        return f"its rows span [{meta.min_ts}, {meta.max_ts}], outside this segment [{segment_start}, {end})"
    return None


class Table:
    def __init__(self, env: TableEnv, path: str, dataset: str, segment_start: int) -> None:
        self.env = env
        self.fs = env.fs
        self.engine = env.engine
        self.path = path
        self.dataset = dataset
        self.segment_start = segment_start
        self.log = get_logger(engine=env.engine.name, table=path)
        self._commit_lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._merge_lock = threading.Lock()
        # Guards what queries see: the live parts, the flushes in progress and the write buffer.
        # It is only ever held briefly; I/O happens outside it (lock order: _commit_lock, _lock).
        self._lock = threading.RLock()
        self._buffer: MemRows | None = None
        self._pending_since = 0.0
        self._flushing: list[MemRows] = []
        self._live: dict[int, PartHandle] = {}
        self._epoch = 0
        self._next_id = 1
        self.salvaged: set[int] = set()
        self._poison: BaseException | None = None
        self._closed = False
        #: whether every level of `path` is known durable in its parent (see _ensure_durable_path)
        self._path_durable = False
        self.dictionary: ZstdDict | None = None
        self.kinds = {c.name: c.kind for c in env.engine.schema.columns}

    # -- open & recovery ---------------------------------------------------------------------
    def open(self) -> Table:
        """Create or recover the table (SPEC §6). Idempotent; safe to crash in.

        Only what Lamina makes is ever removed: a symlink, FIFO or other special entry, or a
        regular file named like a part, is foreign, logged and left alone (`lamina check`
        reports it); a listed part that is a symlink refuses the open, naming it. An OS error
        that proves nothing about the data (descriptors, memory, permissions, EIO) fails the
        open with `EnvironmentIOError` and quarantines nothing."""
        fs = self.fs
        if not fs.exists(self.path):
            self._ensure_durable_path()
        entries = fs.listdir(self.path)
        kinds = {n: fs.kind(posixpath.join(self.path, n)) for n in entries}
        for name, kind in kinds.items():
            if kind not in (FILE, DIR):
                self.log.warning("foreign {} {} in table directory left untouched", kind, name)
        # Removing leftovers (here and below) takes no barrier: a leftover that a power loss
        # brings back is a leftover again at the next open (SPEC §4 fsyncs an unlink only when
        # its result must survive; the barrier-mutation test confirms nothing can observe it).
        for name in entries:  # leftovers of interrupted atomic writes
            if name.endswith(TMP_SUFFIX) and kinds[name] == FILE:
                fs.remove(posixpath.join(self.path, name))
        epochs = sorted((e for n in entries if (e := names.parse_manifest_name(n)) is not None), reverse=True)
        part_dirs = {pid: n for n in entries if (pid := names.parse_part_name(n)) is not None}
        if not epochs and any(kinds[n] == DIR for n in part_dirs.values()):
            raise ManifestMissingError(self.path, sorted(n for n in part_dirs.values() if kinds[n] == DIR))
        manifest = self._load_newest_manifest(epochs)
        live_ids = set(manifest.parts) if manifest else set()
        # After a rollback the damaged newer manifests remain: continue above them, so the next
        # manifest written is the newest again.
        rolled_back = manifest is not None and manifest.epoch != epochs[0]
        self._epoch = epochs[0] if epochs else 0
        self.salvaged = set(manifest.salvaged) if manifest else set()
        cdir = posixpath.join(self.path, names.CORRUPT_DIR)
        corrupt = set(fs.listdir(cdir)) if fs.is_dir(cdir) else set()
        # A listed part that is gone (and not set aside in corrupt/) stops the open *before*
        # anything is removed: a failing open must never destroy what repair would need. So does
        # one that is a symlink: following it would serve (and later delete) data outside.
        for pid in sorted(live_ids):
            pname = names.part_name(pid)
            kind = kinds.get(pname)
            if kind is None and pname not in corrupt:
                raise MissingPartError(self.path, pname)
            if kind not in (None, FILE, DIR):
                raise ForeignEntryError(
                    posixpath.join(self.path, pname),
                    kind or "entry",
                    "it is listed as a live part: move the part's directory back in its place "
                    "(Lamina never follows a symlink inside its store), then reopen",
                )
        unlisted = [n for pid, n in sorted(part_dirs.items()) if pid not in live_ids and kinds[n] == DIR]
        if unlisted and manifest is not None:
            # The manifest that no longer lists these parts may be in the page cache only: a
            # process killed between its rename and the directory fsync leaves it so. Deleting a
            # retired merge input on its word, then losing it to a power cut, would bring back
            # the older manifest listing a part that is gone (and the merged part, unlisted, would
            # go at the next open). Make it durable before acting on it.
            fsync_dir(fs, self.path)
        for name in unlisted:
            # uncommitted flush/merge output, or a retired part whose deletion was cut short
            try:
                rmtree(fs, posixpath.join(self.path, name))
            except ForeignEntryError as e:
                self.log.warning("unlisted part {} left in place: {}", name, e)
        # IDs come from the manifest's counter (validated when it was loaded), never from names
        # found on disk: a stray directory named ffffffffffffffff must not use up the 16-digit
        # ID space. Quarantined and salvaged IDs only count for a manifest older than the
        # counter; any ID still in use somewhere is skipped by `allocate_id` (`_id_taken`).
        counter = manifest.next_part_id if manifest else 0
        known = list(live_ids)
        if not counter:
            known += self.salvaged
            known += [p for n in corrupt if (p := names.parse_part_name(n[:16])) is not None]
        self._next_id = max(max(known, default=0) + 1, counter)
        dropped: list[int] = []
        for pid in sorted(live_ids):
            pname = names.part_name(pid)
            ppath = posixpath.join(self.path, pname)
            if kinds.get(pname) is None:  # checked above: a quarantine interrupted before its manifest
                self._finish_interrupted_quarantine(pname)
                dropped.append(pid)
                continue
            try:
                self._remove_tmp_files(ppath)
                reader = self._open_part(pname)
            except CorruptPartError as e:
                e.with_engine(self.engine.name)
                self._set_aside(pname, e, stage="open")
                dropped.append(pid)
                continue
            self._live[pid] = self._handle(reader)
            self._check_placement(reader)
        if dropped or manifest is None or rolled_back:
            self._write_manifest(sorted(self._live))
        prune_manifests(fs, self.path, self._epoch - 1)
        self._adopt_dictionary()
        for pid in dropped:
            self._auto_salvage(names.part_name(pid))
        return self

    def _check_placement(self, reader: PartReader) -> None:
        """A valid part in the wrong directory (a dataset or segment directory renamed by hand)
        would be served under the wrong dataset, or skipped by queries that prune segments by
        their time range: refuse, naming it, rather than drop rows from answers silently."""
        why = misplacement(reader.meta, self.dataset, self.segment_start, self.engine.segment_interval_ns)
        if why is not None:
            raise MisplacedPartError(self.path, reader.name, why)

    def _auto_salvage(self, pname: str) -> None:
        if not self.env.auto_salvage or names.parse_part_name(pname) in self.salvaged:
            return
        from lamina.salvage import SalvageError, salvage

        try:
            salvage(self, pname)
        except (SalvageError, EnvironmentIOError) as e:  # the part stays in corrupt/: salvage by hand
            self.log.bind(part=pname).error("automatic salvage of {} failed: {}", pname, e)

    def _remove_tmp_files(self, part_dir: str) -> None:
        """A `*.tmp` inside a committed part is the debris of an atomic write cut short (an
        operator's copy, say): never data the part depends on, so it is removed, not a reason to
        quarantine the part. Only a regular file is: a symlink or FIFO of that name is foreign,
        and the part's validation reports it."""
        if not self.fs.is_dir(part_dir):
            return
        try:
            listing = self.fs.listdir(part_dir)
        except OSError as e:
            raise os_error(posixpath.basename(part_dir), "", -1, e, "listing", self.engine.name) from None
        for n in listing:
            p = posixpath.join(part_dir, n)
            if n.endswith(TMP_SUFFIX) and self.fs.kind(p) == FILE:  # cleanup: no barrier (see `open`)
                self.fs.remove(p)

    def _load_newest_manifest(self, epochs: list[int]) -> Manifest | None:
        for i, epoch in enumerate(epochs):
            path = posixpath.join(self.path, names.manifest_name(epoch))
            try:
                m = load_record(read_record_file(self.fs, path), Manifest, SUPPORTED_VERSIONS)
                if m.epoch != epoch:
                    raise RecordError([f"epoch {m.epoch} in a file named for epoch {epoch}"])
                return m
            except RecordError as e:
                if i == 0 and not self.env.allow_rollback:
                    raise CorruptManifestError(path, str(e)) from None
                self.log.error("manifest {} is damaged ({}); rolling back as allowed", path, e)
        if epochs:
            # Every manifest is damaged. Going on without one would treat every part as an
            # uncommitted leftover and delete it: refuse even under allow_rollback (repair
            # rebuilds the manifest from the parts' lineage).
            newest = posixpath.join(self.path, names.manifest_name(epochs[0]))
            raise CorruptManifestError(newest, "no manifest of this table verifies", can_roll_back=False)
        return None

    def _finish_interrupted_quarantine(self, pname: str) -> None:
        cdir = posixpath.join(self.path, names.CORRUPT_DIR)
        dest = posixpath.join(cdir, pname)
        # The move into corrupt/ may be in the page cache only (a process killed before
        # `move_to_corrupt`'s fsyncs). Make it durable, as that function does, before the reason
        # and the manifest: the arrival in corrupt/ (the part's own entry, and whatever landed
        # inside it: a stray file moved to `original`, a reason.json no later open rewrites)
        # before the absence from the table, or a power cut in between loses the part
        # (quarantined means set aside, never deleted, SPEC §10.3); and the absence before a
        # reason is written into it, or the part comes back to the table holding a reason.json.
        fsync_dir(self.fs, cdir)
        if self.fs.is_dir(dest):
            fsync_dir(self.fs, dest)
        fsync_dir(self.fs, self.path)
        if not self.fs.exists(posixpath.join(dest, names.REASON)):
            err = CorruptPartError(
                pname,
                "",
                -1,
                CorruptionReason.METADATA,
                "quarantine interrupted by a crash; original reason lost",
            )
            write_reason(
                self.fs,
                dest,
                reason_record(
                    err, engine=self.engine.name, dataset=self.dataset, table=self.path, stage="recovery"
                ),
            )
        self.log.warning("completed an interrupted quarantine of {}", pname)

    def _open_part(self, pname: str, meta: PartMeta | None = None) -> PartReader:
        return PartReader.open(
            DirSource(self.fs, posixpath.join(self.path, pname), self.env.descriptors),
            pname,
            meta=meta,
            kinds=self.kinds,
            key_filter=self.env.layout.key_filter,
            engine=self.engine.name,
        )

    def _handle(self, reader: PartReader) -> PartHandle:
        return PartHandle(reader, on_free=self._free_part)

    def _free_part(self, h: PartHandle) -> None:
        """Last reference gone: remove a retired part's files (idempotent, crash-safe).

        No barrier: the part left the manifest at the commit point, so a removal that a power
        loss undoes (wholly or in part) leaves an unlisted directory, which the next open removes
        as a leftover. The table's IDs only grow (`next_part_id`), so no newer part takes its
        name; and a pending transaction intent that names it finds it merged away
        (`txn._merged_away` is checked before the directory), so it is never rolled forward."""
        if not h.retired or h.in_memory:
            return
        try:
            self._check_owner()  # delete only in the store this process still owns
            rmtree(self.fs, posixpath.join(self.path, h.name))
        except (OSError, LaminaError) as e:  # recovery removes unlisted parts anyway
            self.log.warning("could not remove retired part {}: {}", h.name, e)

    def _adopt_dictionary(self) -> None:
        newest = max(self._live.values(), key=lambda h: h.part_id, default=None)
        if newest is not None and newest.reader.dictionary is not None:
            self.dictionary = newest.reader.dictionary

    # -- commit (the introducer) -------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.env.guard is not None:
            self.env.guard()
        if self._closed:
            raise StoreClosedError(f"table {self.path} is closed")
        if self._poison is not None:
            raise PoisonedTableError(self.path, self._poison)

    def _guard_fsync(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except FsyncFailed as e:
            self._poison = e
            self.log.error("fsync failed; table poisoned until reopen: {}", e)
            raise

    def _ensure_durable_path(self) -> None:
        """Make every level of the table's path durable in its parent: when the table is created,
        and again before the first commit of each open. An existing path is not proof: a process
        killed while creating the table leaves the directories in the page cache with entries
        that a later power loss can still undo, and acknowledged commits inside with them. (Not
        at every open: a clean reopen writes nothing, and most tables are only read.)"""
        makedirs_durable(self.fs, self.path)
        self._path_durable = True

    def _check_owner(self) -> None:
        """Before a flush or merge writes anything, and before every commit: this process still
        owns the store (see TableEnv.before_commit)."""
        if self.env.before_commit is not None:
            self.env.before_commit()

    def _write_manifest(self, parts: list[int], salvaged: set[int] | None = None) -> None:
        self._check_owner()
        if not self._path_durable:
            self._guard_fsync(self._ensure_durable_path)
        epoch = self._epoch + 1
        marks = sorted(self.salvaged | (salvaged or set()))
        path = posixpath.join(self.path, names.manifest_name(epoch))
        try:
            self._guard_fsync(lambda: write_manifest(self.fs, self.path, epoch, parts, marks, self._next_id))
        except Exception as e:
            if self.fs.exists(path):  # renamed into place, then a barrier failed
                self._poison = self._poison or e
                raise CommitUncertainError(self.path, e) from e
            raise
        self._epoch = epoch
        self.salvaged = set(marks)

    def _discard_output(self, err: BaseException, part_dir: str) -> None:
        """Remove a failed output, unless the manifest listing it may already be durable."""
        if not isinstance(err, CommitUncertainError):
            remove_partial(self.fs, part_dir)

    def _announce(self, pname: str, kind: str, rows: int) -> None:
        """`lamina_part_committed` for a part that just became live (flush, merge or salvage)."""
        self._notify(
            "lamina_part_committed",
            engine=self.engine.name,
            dataset=self.dataset,
            table=self.path,
            part=pname,
            kind=kind,
            rows=rows,
        )

    def _notify(self, hook: str, **kwargs: Any) -> None:
        """Call an observer hook; an observer's failure is logged, never the caller's problem
        (an exporter must not fail an acknowledged flush or the opening of a store)."""
        try:
            getattr(self.env.hook, hook)(**kwargs)
        except Exception as e:
            self.log.opt(exception=e).error("observer hook {} failed", hook)

    def _commit(
        self,
        add: list[PartHandle],
        remove: list[int],
        *,
        flushed: MemRows | None = None,
        salvaged: int | None = None,
    ) -> None:
        """Make `add` live and `remove` retired, durably (SPEC §5 step 4), then visibly.

        The manifest is written first; the in-memory swap (including dropping the memory rows a
        flush made durable) then happens in one critical section, so no snapshot ever sees the
        same rows twice or not at all.
        """
        with self._commit_lock:
            self._check_writable()
            with self._lock:
                missing = [r for r in remove if r not in self._live]
                ids = sorted((set(self._live) - set(remove)) | {h.part_id for h in add})
            if missing:
                raise RuntimeError(f"parts {missing} are no longer live (quarantined meanwhile?)")
            self._write_manifest(ids, None if salvaged is None else {salvaged})
            with self._lock:
                retired = [self._live.pop(r) for r in remove]
                for h in add:
                    self._live[h.part_id] = h
                if flushed is not None:
                    self._flushing.remove(flushed)
            try:
                prune_manifests(self.fs, self.path, self._epoch - 1)
            except OSError as e:  # an old manifest left behind is harmless
                self.log.warning("could not prune old manifests: {}", e)
        for h in retired:
            h.retire()

    def allocate_id(self) -> int:
        """The next part ID from the manifest's counter, skipping any ID still in use somewhere
        (`_id_taken`); past the last 16-digit ID allocation fails (`PartIdExhaustedError`): it
        never wraps or widens."""
        with self._commit_lock:
            pid = self._next_id
            while pid <= MAX_PART_ID and self._id_taken(pid):
                pid += 1
            if pid > MAX_PART_ID:
                raise PartIdExhaustedError(self.path)
            self._next_id = pid + 1
            return pid

    def _id_taken(self, pid: int) -> bool:
        """An ID that names something already, which a new part must never alias: a directory in
        the table (a leftover that could not be removed, a foreign entry) or in corrupt/ (a part
        quarantined by a repair or a rollback after the counter was written), a salvage mark, or
        the lineage of a live part (a repair would take the new part for a retired input). The
        counter alone cannot be trusted for these: after a rollback or a repair it comes from an
        older manifest."""
        if pid in self.salvaged:
            return True
        with self._lock:
            if any(pid in h.reader.meta.lineage for h in self._live.values()):
                return True
        name = names.part_name(pid)
        return self.fs.exists(posixpath.join(self.path, name)) or self.fs.exists(
            posixpath.join(self.path, names.CORRUPT_DIR, name)
        )

    # -- writes & memory parts ---------------------------------------------------------------
    def append(self, rows: Rows) -> None:
        with self._lock:
            self._check_writable()
            old = self._buffer
            if old is None:
                self._pending_since = time.monotonic()
            self._buffer = MemRows([*(old.batches if old else []), rows])
        if old is not None:
            old.drop()  # a memory part built for queries of the old buffer is stale now

    @property
    def pending_rows(self) -> int:
        buf = self._buffer
        return buf.nrows if buf is not None else 0

    @property
    def pending_age(self) -> float:
        return time.monotonic() - self._pending_since if self._buffer is not None else 0.0

    def _build_part(self, rows: Rows, part_id: int) -> tuple[MemSink, PartMeta]:
        engine = self.engine
        rows, keys = sort_rows(engine, rows)
        rows, keys = self._apply_rule(rows, keys)
        sink = MemSink()
        ptags, tag_data = tags_for_rows(engine.schema, rows)
        self._maybe_train_dictionary(rows, keys)
        w = PartWriter(
            sink, engine.schema, self.env.layout, ptags, dictionary=self.dictionary, threads=self.env.threads
        )
        w.add_rows(keys, rows, block_bounds(engine.schema, keys, row_sizes(engine.schema, rows)), tag_data)
        meta = w.finish(part_id=part_id, engine=engine.name, dataset=self.dataset)
        return sink, meta

    def _apply_rule(self, rows: Rows, keys: list[bytes]) -> tuple[Rows, list[bytes]]:
        """Run the engine's equal-key rule over each group of equal block keys."""
        if self.engine.equal_key_rule is keep_all_rows:
            return rows, keys
        n = len(keys)
        bounds = [0] + [i for i in range(1, n) if keys[i] != keys[i - 1]] + [n]
        groups = [self.engine.equal_key_rule(take(rows, slice(a, b))) for a, b in itertools.pairwise(bounds)]
        out_keys = [keys[a] for a, g in zip(bounds, groups, strict=False) for _ in range(rows_len(g))]
        return concat(self.engine.schema, groups), out_keys

    def _maybe_train_dictionary(self, rows: Rows, keys: list[bytes]) -> None:
        from lamina.format.part_writer import train_for_layout

        if self.dictionary is None and self.env.layout.dictionary_files:
            self.dictionary = train_for_layout(self.engine.schema, self.env.layout, rows, keys)

    def _memory_part(self, batches: list[Rows]) -> PartHandle:
        sink, meta = self._build_part(concat(self.engine.schema, batches), 0)
        reader = PartReader.open(
            MemSource(sink.files),
            "memory",
            meta=meta,
            kinds=self.kinds,
            key_filter=self.env.layout.key_filter,
            engine=self.engine.name,
        )
        return PartHandle(reader, in_memory=True)

    # -- flush -------------------------------------------------------------------------------
    def flush(self) -> int | None:
        """Write the buffered rows as one part and commit it. Durable when it returns.

        The buffer moves to the "flushing" list in the same critical section that empties it, and
        leaves it in the same critical section that makes the part live: queries see those rows
        exactly once throughout. On failure the rows go back to the front of the buffer.
        """
        with self._flush_lock:
            buf = self.take_buffer()
            if buf is None:
                return None
            try:
                prep = self.write_flush(buf)
                try:
                    self._commit([prep.handle], [], flushed=buf)
                except BaseException as e:
                    prep.handle.reader.close()
                    self._discard_output(e, prep.path)
                    raise
            except BaseException:
                self.restore_buffer(buf)
                raise
            buf.drop()
        self.flushed(prep)
        return prep.part_id

    # The steps of `flush`, also driven one by one by a multi-table transaction (txn.py), which
    # holds `flush_lock` of every participating table meanwhile.
    @property
    def flush_lock(self) -> threading.Lock:
        return self._flush_lock

    def take_buffer(self) -> MemRows | None:
        """Move the write buffer to the flushing list (still visible to queries)."""
        with self._lock:
            self._check_writable()
            buf = self._buffer
            if buf is None:
                return None
            self._buffer = None
            self._flushing.append(buf)
            return buf

    def write_flush(self, buf: MemRows) -> PreparedFlush:
        """SPEC §5 steps 1-3 for a taken buffer: the part is complete on disk but not live. On
        failure nothing of it remains."""
        self._check_owner()
        # reuses the memory part already built for queries of this buffer, if any
        mem = buf.acquire(self._memory_part)
        try:
            pid = self.allocate_id()
            files = mem.reader.source.files  # type: ignore[attr-defined]
            meta = attrs.evolve(mem.reader.meta, part_id=pid, seq=pid)
            pname = names.part_name(pid)
            ppath = posixpath.join(self.path, pname)
            self._guard_fsync(lambda: write_mem_part(self.fs, ppath, files, meta))
            handle = self._handle(self._open_part(pname, meta))
            # reuse what queries already decoded of the memory part (tag dictionaries...)
            handle.reader.adopt_decoded(mem.reader)
        finally:
            mem.decref()
        return PreparedFlush(self, buf, handle, ppath)

    def commit_flush(self, prep: PreparedFlush) -> None:
        """SPEC §5 step 4 for a written flush: its manifest. On failure the caller decides what
        happens to the part (a transaction may already have committed it elsewhere)."""
        self._commit([prep.handle], [], flushed=prep.buf)

    def poison(self, err: BaseException) -> None:
        """Refuse commits until reopen: a transaction this table is part of is durable but not
        complete here; recovery completes it."""
        self._poison = self._poison or err

    def restore_buffer(self, buf: MemRows) -> None:
        """Nothing was acknowledged: the rows go back in front of anything written since, so a
        retry (after ENOSPC is fixed, say) flushes them in order."""
        with self._lock:
            if buf in self._flushing:
                self._flushing.remove(buf)
            later = self._buffer
            self._buffer = MemRows([*buf.batches, *(later.batches if later else [])])
            if later is None:
                self._pending_since = time.monotonic()
        if later is not None:
            later.drop()
        buf.drop()
        self.env.metrics.inc("lamina_flush_errors_total", engine=self.engine.name)

    def flushed(self, prep: PreparedFlush) -> None:
        """Count and announce a committed flush."""
        rows = prep.handle.reader.meta.rows
        self.env.metrics.inc("lamina_flushes_total", engine=self.engine.name)
        self.env.metrics.inc("lamina_flushed_rows_total", rows, engine=self.engine.name)
        self._announce(prep.handle.name, "flush", rows)

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self, *, include_memory: bool = True) -> Snapshot:
        """A consistent view: live parts, flushes in progress and the buffer, as of one instant."""
        with self._lock:
            parts = list(self._live.values())
            for h in parts:
                h.incref()
            mems = [*self._flushing, *([self._buffer] if self._buffer else [])] if include_memory else []
            epoch = self._epoch
        # Building memory parts is slow: done outside the lock, from rows captured inside it.
        try:
            parts += [m.acquire(self._memory_part) for m in mems]
        except BaseException:
            for h in parts:
                h.decref()
            raise
        return Snapshot(epoch, tuple(parts), adopt=True)

    def part_infos(self) -> list[PartInfo]:
        with self._lock:
            return [
                PartInfo(
                    h.part_id,
                    h.reader.meta.data_size(),
                    h.reader.meta.rows,
                    h.reader.meta.level,
                    h.reader.meta.created_ns,
                )
                for h in self._live.values()
            ]

    # -- merge -------------------------------------------------------------------------------
    def merge(self, part_ids: list[int]) -> int | None:
        """Merge the given live parts into one. A damaged input is quarantined (the merge is
        abandoned, its partial output removed) and None returned; the caller retries without it."""
        with self._merge_lock:
            self._check_writable()
            snap = self.snapshot(include_memory=False)
            try:
                inputs = [h for h in snap.parts if h.part_id in set(part_ids)]
                if len(inputs) < 2:
                    return None
                # oldest data first (not lowest ID: see PartMeta.seq); the equal-key rule relies on it
                inputs.sort(key=lambda h: h.reader.meta.data_seq)
                return self._merge(inputs)
            finally:
                snap.release()

    def _merge(self, inputs: list[PartHandle]) -> int | None:
        t0 = time.monotonic()
        self._check_owner()
        if self.env.disk is not None:  # before anything is written: a merge that cannot fit never starts
            self.env.disk.check_merge(
                sum(h.reader.meta.data_size() for h in inputs), f"merging {len(inputs)} parts of {self.path}"
            )
        pid = self.allocate_id()
        pname = names.part_name(pid)
        ppath = posixpath.join(self.path, pname)
        readers = [h.reader for h in inputs]
        sink: DirSink | None = None
        try:
            sink = self._guard_fsync(lambda: DirSink(self.fs, ppath))
            meta = merge_parts(
                self.engine,
                self.env.layout,
                readers,
                sink,
                part_id=pid,
                dataset=self.dataset,
                dictionary=self.dictionary,
                threads=self.env.threads,
            )
            meta = attrs.evolve(
                meta,
                seq=max(h.reader.meta.data_seq for h in inputs),
                lineage=sorted(
                    {*meta.lineage, *self._on_disk(x for h in inputs for x in h.reader.meta.lineage)}
                ),
            )
            self._guard_fsync(sink.close)
            self._guard_fsync(lambda: publish(self.fs, ppath, meta))
            handle = self._handle(self._open_part(pname, meta))
        except CorruptPartError as e:
            if sink is not None:
                sink.abort()
            remove_partial(self.fs, ppath)
            self.env.metrics.inc("lamina_merge_errors_total", engine=self.engine.name)
            bad = next((h for h in inputs if h.name == e.part), None)
            if bad is None:
                raise
            self.quarantine(bad.part_id, e.with_engine(self.engine.name), stage="merge")
            return None
        except BaseException:
            if sink is not None:
                sink.abort()
            remove_partial(self.fs, ppath)
            self.env.metrics.inc("lamina_merge_errors_total", engine=self.engine.name)
            raise
        try:
            self._commit([handle], [h.part_id for h in inputs])
        except BaseException as e:
            handle.reader.close()
            self._discard_output(e, ppath)
            raise
        m = self.env.metrics
        m.inc("lamina_merges_total", engine=self.engine.name)
        m.inc("lamina_merged_parts_total", len(inputs), engine=self.engine.name)
        secs = time.monotonic() - t0
        self.log.bind(part=pname).debug("merged {} parts into {} in {:.3f}s", len(inputs), pname, secs)
        self._announce(pname, "merge", meta.rows)
        self._notify(
            "lamina_merge_finished",
            engine=self.engine.name,
            table=self.path,
            inputs=[h.name for h in inputs],
            output=pname,
            seconds=secs,
        )
        return pid

    def _on_disk(self, part_ids: Any) -> set[int]:
        """The given ancestor part IDs whose directories still exist (retired, but held by a
        reader, or their deletion cut short). Listing them in a new part's lineage keeps
        lineage-based repair from taking them for live parts once the intermediate part is gone."""
        return {x for x in part_ids if self.fs.exists(posixpath.join(self.path, names.part_name(x)))}

    def commit_salvaged(
        self, rows: Rows | None, source_id: int, source_seq: int, source_lineage: tuple[int, ...] = ()
    ) -> str | None:
        """Commit rows recovered from quarantined part `source_id` as a new part, marking the
        source salvaged in the same manifest. Returns the new part's name (None without rows)."""
        from lamina.salvage import SalvageError

        with self._flush_lock, self._commit_lock:
            self._check_writable()
            if source_id in self.salvaged:  # re-checked under the lock: two salvages may race
                raise SalvageError(f"{names.part_name(source_id)} was already salvaged into {self.path}")
            if rows is None or rows_len(rows) == 0:
                self._commit([], [], salvaged=source_id)
                return None
            pid = self.allocate_id()
            pname = names.part_name(pid)
            ppath = posixpath.join(self.path, pname)
            sink, meta = self._build_part(rows, pid)
            lineage = sorted({source_id, *self._on_disk(source_lineage)})
            meta = attrs.evolve(meta, lineage=lineage, seq=source_seq)
            self._guard_fsync(lambda: write_mem_part(self.fs, ppath, sink.files, meta))
            handle = self._handle(self._open_part(pname, meta))
            try:
                self._commit([handle], [], salvaged=source_id)
            except BaseException as e:
                handle.reader.close()
                self._discard_output(e, ppath)
                raise
        self._announce(pname, "salvage", meta.rows)
        return pname

    # -- quarantine --------------------------------------------------------------------------
    def _set_aside(self, pname: str, err: CorruptPartError, *, stage: str) -> dict[str, Any]:
        """Move a part to corrupt/ with reason.json; log, count, announce. Manifest is the caller's."""
        reason = reason_record(
            err, engine=self.engine.name, dataset=self.dataset, table=self.path, stage=stage
        )
        self._guard_fsync(lambda: move_to_corrupt(self.fs, self.path, pname, reason))
        from lamina.format.records import CONVERTER

        fields = CONVERTER.unstructure(reason)
        self.log.bind(
            part=pname, **{k: v for k, v in fields.items() if k not in ("part", "engine", "table")}
        ).error(
            "quarantined part {} of {}: {} in {} at offset {}: {}",
            pname,
            self.path,
            err.reason.value,
            err.file,
            err.offset,
            err.detail,
        )
        self.env.metrics.inc(
            "lamina_corrupt_parts_total", engine=self.engine.name, stage=stage, reason=err.reason.value
        )
        self._notify(
            "lamina_part_quarantined", engine=self.engine.name, table=self.path, part=pname, reason=fields
        )
        return fields

    def quarantine(self, part_id: int, err: CorruptPartError, *, stage: str) -> bool:
        """Set a live part aside and commit a manifest without it. False if it was not live."""
        with self._commit_lock:
            h = self._live.get(part_id)
            if h is None:
                return False
            self._check_writable()
            self._set_aside(h.name, err, stage=stage)
            self._write_manifest(sorted(set(self._live) - {part_id}))
            with self._lock:
                del self._live[part_id]
            h.in_memory = True  # its directory already moved: nothing to delete when freed
        h.retire()
        self._auto_salvage(h.name)
        return True

    # -- retention & lifecycle ---------------------------------------------------------------
    def close(self, on_released: Callable[[], None] | None = None) -> None:
        """Stop the table. `on_released` runs once no snapshot holds any of its parts any more
        (retention deletes the segment then, not under a running query)."""
        with self._commit_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            live, self._live = list(self._live.values()), {}
            buf, self._buffer = self._buffer, None
        if on_released is not None:
            remaining = [len(live)]
            count_lock = threading.Lock()

            def freed(_h: PartHandle) -> None:
                with count_lock:
                    remaining[0] -= 1
                    done = remaining[0] == 0
                if done:
                    on_released()

            for h in live:
                h.set_on_free(freed)
            if not live:
                on_released()
        for h in live:
            h.decref()
        if buf is not None:
            buf.drop()

    @property
    def live_parts(self) -> list[PartHandle]:
        with self._lock:
            return list(self._live.values())

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def poisoned(self) -> bool:
        return self._poison is not None
