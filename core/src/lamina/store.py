"""The application-facing API: `lamina.open(path)` -> `Store` -> `store.engine(name)`.

A store is a directory. Opening it loads engines by entry point, recovers every table (SPEC §6),
and starts one background thread that flushes buffers by size and age, runs the merge policy, and
drops segments past retention. Closing flushes what is buffered and stops the thread.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from lamina import __version__, names, txn
from lamina.batch import check_tag_name_limit, columns_from_batch, rows_to_batch
from lamina.datasets import DATASET_FILE, canonical_options, engine_for, load_options, store_options
from lamina.disk import DiskGuard, Watermarks
from lamina.engine import Engine
from lamina.errors import (
    CorruptPartError,
    ForeignEntryError,
    ForkedStoreError,
    InvalidInputError,
    LaminaError,
    NotAStoreError,
    StoreAlreadyOpenError,
    StoreClosedError,
    StoreLockedError,
)
from lamina.format.records import read_record_file
from lamina.format.rows import take
from lamina.io.confined import confined
from lamina.io.descriptors import DescriptorCache
from lamina.io.durable import TMP_SUFFIX, fsync_dir, makedirs, rmtree, write_atomic
from lamina.io.fs import DIR, FILE, FileLock, FileSystem, OSFileSystem, absolute, os_identity
from lamina.log import get_logger
from lamina.merge.policy import select_parts
from lamina.metrics import Metrics
from lamina.plugins import Registry
from lamina.quarantine import QuarantinedPart, drop_quarantined, list_quarantined
from lamina.query import QueryContext, check_dataset
from lamina.salvage import SalvageReport, salvage
from lamina.table import Table, TableEnv
from lamina.txn import FlushGroup

DESCRIPTOR_VERSION = 1
log = get_logger(component="store")

# Stores open in this process, by the identity of their directory: a second open of the same store
# in one process is refused by name (flock alone cannot tell it from another process).
_open_stores: dict[tuple[object, ...], weakref.ReferenceType[Store]] = {}
_open_lock = threading.Lock()


def _forget_stores_in_child() -> None:
    """After fork(): the child owns none of the parent's open stores (their buffers and lock are
    the parent's; each handle refuses use by its pid check). It lets go of its copies of their
    descriptors, the lock's first: a worker that outlives a parent killed without closing would
    otherwise keep every later writer out. Locks other threads held at the fork are replaced,
    never waited for (those threads do not exist in the child)."""
    global _open_lock
    _open_lock = threading.Lock()
    for ref in list(_open_stores.values()):
        store = ref()
        if store is not None:
            store._lock.abandon()
            store.descriptors.abandon()
    _open_stores.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_stores_in_child)


def _identity(fs: FileSystem, path: str) -> tuple[object, ...]:
    if isinstance(fs, OSFileSystem):
        return ("os", *os_identity(path))
    return (id(fs), path)


@attrs.frozen
class EngineStats:
    tables: int
    parts: int
    rows: int
    bytes: int
    buffered_rows: int
    quarantined: int


@attrs.frozen
class StoreStats:
    engines: dict[str, EngineStats]
    flushes: int
    merges: int
    corrupt_parts: int


class _StoreLock:
    """The store directory's lock, plus the legacy `lamina.lock` file's while one exists: Lamina
    before 0.2 locked that file, so both must be held for old and new to exclude each other."""

    def __init__(self, main: FileLock, legacy: FileLock | None) -> None:
        self.main, self.legacy = main, legacy

    def release(self) -> None:
        try:
            if self.legacy is not None:
                self.legacy.release()
        finally:
            self.main.release()

    def verify(self) -> None:
        self.main.verify()

    def abandon(self) -> None:
        if self.legacy is not None:
            self.legacy.abandon()
        self.main.abandon()


def lock_store(fs: FileSystem, root: str) -> FileLock:
    """Take the single-writer lock of the store at `root` (StoreLockedError if it is held)."""
    try:
        main = fs.lock(root)
    except BlockingIOError:
        raise StoreLockedError(root) from None
    legacy_path = posixpath.join(root, names.STORE_LOCK)
    legacy = None
    if fs.kind(legacy_path) == FILE:
        try:
            legacy = fs.lock(legacy_path)
        except BlockingIOError:
            main.release()
            raise StoreLockedError(root) from None
    return _StoreLock(main, legacy)


class EngineHandle:
    """One engine of an open store: write, flush, query, merge."""

    def __init__(self, store: Store, engine: Engine) -> None:
        self.store, self.engine = store, engine
        self.name = engine.name
        self._tables: dict[tuple[str, int], Table] = {}
        self._lock = threading.RLock()
        self._envs: dict[str, TableEnv] = {}
        self._dropping: set[tuple[str, int]] = set()
        self.env = TableEnv(
            fs=store.fs,
            engine=engine,
            layout=store.registry.pm.hook.lamina_file_layout(engine=engine),
            metrics=store.metrics,
            hook=store.registry.pm.hook,
            allow_rollback=store.allow_rollback,
            auto_salvage=store.auto_salvage,
            descriptors=store.descriptors,
            disk=store.disk,
            guard=store._check_process,
            before_commit=store._before_commit,
        )

    # -- tables ------------------------------------------------------------------------------
    def _table(self, dataset: str, seg_start: int) -> Table:
        key = (dataset, seg_start)
        with self._lock:
            t = self._tables.get(key)
            if t is None and key in self._dropping:
                raise InvalidInputError(
                    self.engine.schema.timestamp,
                    "falls in a segment being dropped by retention",
                    engine=self.name,
                )
            if t is None:
                seg = names.segment_name(seg_start, self.engine.segment_interval_ns)
                path = names.table_dir(self.store.path, self.name, dataset, seg, 0)
                t = self._tables[key] = Table(self._env_for(dataset), path, dataset, seg_start).open()
            return t

    def _env_for(self, dataset: str) -> TableEnv:
        """The table environment of a dataset: an engine with per-dataset options is specialised
        by the dataset's stored options (lamina.datasets); its schema may then be overridden by a
        plugin through `lamina_block_schema` (the engine's own schema is the default)."""
        env = self._envs.get(dataset)
        if env is None:
            hook = self.store.registry.pm.hook
            base = engine_for(self.store.fs, self.store.path, self.engine, dataset)
            schema = hook.lamina_block_schema(engine=base, dataset=dataset)
            engine = base if schema is base.schema else attrs.evolve(base, schema=schema)
            layout = self.env.layout if base is self.engine else hook.lamina_file_layout(engine=base)
            env = self._envs[dataset] = attrs.evolve(self.env, engine=engine, layout=layout)
        return env

    def _served(self, dataset: str) -> Engine:
        """The engine serving `dataset`; a dataset of a per-dataset-options engine that was never
        defined is bad input, named as such (not a damaged store)."""
        if (
            self.engine.datasets is not None
            and dataset not in self._envs
            and load_options(self.store.fs, self.store.path, self.name, dataset) is None
        ):
            raise InvalidInputError(
                "dataset",
                f"{dataset!r} is not defined; call define({dataset!r}, ...) first",
                engine=self.name,
            )
        return self._env_for(dataset).engine

    def define(self, dataset: str, **options: Any) -> dict[str, Any]:
        """Define `dataset` with engine-specific options, durably (see lamina.datasets). Returns
        the canonical options. Defining it again with the same options is a no-op; with other
        options it is refused: parts already stored must never be reinterpreted."""
        self.store._check_open()
        check_dataset(dataset, engine=self.name)
        canon = canonical_options(self.engine, dataset, options)
        with self._lock:
            old = load_options(self.store.fs, self.store.path, self.name, dataset)
            if old is None:
                store_options(self.store.fs, self.store.path, self.name, dataset, canon)
                log.bind(engine=self.name).info("defined dataset {} of {}", dataset, self.name)
            elif old != canon:
                raise InvalidInputError(
                    "options",
                    f"dataset {dataset!r} is already defined with {old}; refusing to redefine it as "
                    f"{canon} (its stored parts would be misread): use a new dataset name",
                    engine=self.name,
                )
        return canon

    def options(self, dataset: str = "default") -> dict[str, Any] | None:
        """The stored options of `dataset` (None if never defined or the engine has none)."""
        check_dataset(dataset, engine=self.name)  # "../../x" would read outside the store
        if self.engine.datasets is None:
            return None
        return load_options(self.store.fs, self.store.path, self.name, dataset)

    def schema(self, dataset: str = "default") -> Any:
        """The schema the store uses for `dataset` (the engine's, or a plugin's extension)."""
        check_dataset(dataset, engine=self.name)
        return self._schema(dataset)

    def _schema(self, dataset: str) -> Any:
        """`schema` for a dataset name already checked (the write path: no check per call)."""
        return self._env_for(dataset).engine.schema

    def _discover(self) -> None:
        fs, root = self.store.fs, posixpath.join(self.store.path, self.name)
        kind = fs.kind(root)
        if kind is None:
            return
        if kind != DIR:  # every write of this engine would fail on it later, less clearly
            raise ForeignEntryError(root, kind, f"engine {self.name!r} keeps its data there: move it away")
        for dataset in fs.listdir(root):
            dpath = posixpath.join(root, dataset)
            dkind = fs.kind(dpath)
            if names.valid_dataset(dataset) and dkind != DIR:
                raise ForeignEntryError(
                    dpath, dkind or "entry", f"it is where dataset {dataset!r} belongs: move it away"
                )
            if not names.valid_dataset(dataset):
                # `lamina check` reports it as an error; its rows (if any) are not served
                log.bind(engine=self.name).warning("foreign entry {} left untouched", dpath)
                continue
            # A crash inside define() leaves dataset.json.tmp (the atomic write's first step).
            # Removing it takes no barrier: if a power loss brings it back, the next open
            # removes it again. Only a regular file of that name is Lamina's.
            for n in fs.listdir(dpath):
                if n.endswith(TMP_SUFFIX) and fs.kind(posixpath.join(dpath, n)) == FILE:
                    fs.remove(posixpath.join(dpath, n))
            if self.engine.datasets is not None and any(
                names.parse_segment_name(s) is not None for s in fs.listdir(dpath)
            ):
                self._env_for(dataset)  # options missing or damaged: refuse now, naming the file
            for seg in fs.listdir(dpath):
                spath = posixpath.join(dpath, seg)
                kind = fs.kind(spath)
                self._refuse_misfiled(spath, seg, kind)
                if seg.endswith(names.DROPPING_SUFFIX) and kind == DIR:  # a drop cut short: finish it
                    # The rename may be in the page cache only (a process killed before the
                    # drop's own fsync): make it durable before unlinking inside, for the reason
                    # `_remove_segment` gives. Only after a crash, so a clean open writes nothing.
                    fsync_dir(fs, dpath)
                    try:
                        rmtree(fs, spath)
                    except ForeignEntryError as e:
                        log.bind(engine=self.name).warning("expired segment {} left in place: {}", spath, e)
                    continue
                start = names.parse_segment_name(seg)
                shard = posixpath.join(spath, names.shard_name(0))
                if start is not None and kind == DIR and fs.is_dir(shard):
                    self._table(dataset, start)
                elif seg != DATASET_FILE:
                    log.bind(engine=self.name).warning("foreign entry {} left untouched", spath)

    def _refuse_misfiled(self, spath: str, seg: str, kind: str | None) -> None:
        """A segment (or its shard) that is not where Lamina reads it: a file of a segment's name,
        a `shard-0` that is not a directory, or another shard (Lamina serves shard-0 only). Its
        rows would be missing from every answer, and writes into its time range would fail later
        and less clearly: refuse now, naming it."""
        fs = self.store.fs
        if names.parse_segment_name(seg) is None:
            return
        if kind != DIR:
            raise ForeignEntryError(spath, kind or "entry", "a segment directory belongs there: move it away")
        for shard in fs.listdir(spath):
            n = names.parse_shard_name(shard)
            path = posixpath.join(spath, shard)
            if n == 0 and fs.kind(path) != DIR:
                raise ForeignEntryError(path, fs.kind(path) or "entry", "the segment's table belongs there")
            if n is not None and n != 0:
                raise ForeignEntryError(
                    path,
                    "shard directory",
                    "Lamina serves shard-0 only, so its rows would never be read: if it was shard-0, rename "
                    "it back",
                )

    def tables(self, dataset: str | None = None) -> list[Table]:
        with self._lock:
            return [t for (d, _), t in sorted(self._tables.items()) if dataset is None or d == dataset]

    # -- writing -----------------------------------------------------------------------------
    def write(self, batch: Mapping[str, Any], *, dataset: str = "default") -> int:
        """Buffer a columnar batch (column -> sequence). Returns rows accepted. Durable after
        `flush()` returns (or after the background flush)."""
        return self.append(self.prepare(batch, dataset=dataset))

    def prepare(self, batch: Mapping[str, Any], *, dataset: str = "default") -> PreparedWrite:
        """Validate a batch without buffering it: a writer that must land in several engines
        together (a trace batch and its index entries) validates them all before appending any.

        Also refuses a batch that would take a table past `Engine.max_tag_names` tag names."""
        self.store._check_open()
        check_dataset(dataset, engine=self.name)
        # The engine adapts its users' conventions; the core then validates strictly.
        served = self._served(dataset)
        schema = self._schema(dataset)
        limit = served.max_tag_names
        rows = columns_from_batch(schema, served.normalize(batch), self.name, max_tag_names=limit)
        tags = schema.tags_column
        if tags is not None and rows[tags]:
            interval = self.engine.segment_interval_ns
            segs = np.unique(rows[schema.timestamp] // interval).tolist()
            with self._lock:  # a table not open yet holds no tag names
                held = [t for s in segs if (t := self._tables.get((dataset, s * interval))) is not None]
            check_tag_name_limit(tags, rows[tags], held, limit, engine=self.name)
        return PreparedWrite(self, dataset, _own(rows), len(rows[schema.timestamp]))

    def append(self, prep: PreparedWrite) -> int:
        """Buffer rows validated by `prepare`. All or nothing: refuses before buffering anything."""
        if prep.handle is not self:
            raise InvalidInputError(
                "prepared", f"was prepared for engine {prep.handle.name}", engine=self.name
            )
        n = prep.rows_count
        if n == 0:
            return 0
        self.store.disk.check_write()  # before any table is created for these rows
        rows = prep.rows
        interval = self.engine.segment_interval_ns
        segs = rows[self._schema(prep.dataset).timestamp] // interval
        targets = {int(s): self._table(prep.dataset, int(s) * interval) for s in np.unique(segs)}
        for t in targets.values():  # refuse before buffering anything: a write is all or nothing
            t._check_writable()
        for s, table in targets.items():
            part = rows if len(targets) == 1 else take(rows, np.nonzero(segs == s)[0])
            table.append(part)
            if table.pending_rows >= self.engine.flush_rows:
                self.store._wake()
        self.store.metrics.inc("lamina_written_rows_total", n, engine=self.name)
        return n

    def write_rows(self, rows: Iterable[Mapping[str, Any]], *, dataset: str = "default") -> int:
        """Row convenience: a list of dicts, one per row."""
        check_dataset(dataset, engine=self.name)
        self._served(dataset)
        return self.write(rows_to_batch(self._schema(dataset), rows, self.name), dataset=dataset)

    def flush(self) -> list[int]:
        """Flush every table's buffer; durable when it returns. Returns the new part IDs.

        A failing table does not stop the others from flushing; the first error is raised after."""
        self.store._check_process()
        out = []
        first: BaseException | None = None
        groups: list[FlushGroup] = []
        for t in self.tables():
            group = self.store._group_of(self.name, t.dataset)
            try:
                if group is not None:  # flushed with the other members, in one transaction
                    if group not in groups:
                        groups.append(group)
                        out += group.flush()
                    continue
                pid = t.flush()
            except Exception as e:
                first = first or e
                continue
            if pid is not None:
                out.append(pid)
        if first is not None:
            raise first
        return out

    # -- reading -----------------------------------------------------------------------------
    def query(self, *, dataset: str = "default", **kwargs: Any) -> Any:
        """Run the engine's query. A damaged part met on the way is quarantined and the query
        raises `CorruptPartError` naming it (re-running it then answers from the healthy parts)."""
        self.store._check_open()
        check_dataset(dataset, engine=self.name)
        served = self._served(dataset)
        ctx = QueryContext(self._schema(dataset), self.tables(dataset))
        try:
            return served.query(ctx, **kwargs)
        except CorruptPartError as e:
            self._quarantine_from_query(ctx, e)
            raise
        finally:
            ctx.close()

    def _quarantine_from_query(self, ctx: QueryContext, err: CorruptPartError) -> None:
        # Part names are unique per table only: with several segments in the query the name may
        # match more than one part, so an ambiguous match is settled by verifying each candidate.
        candidates = [
            (t, h) for t, snap in ctx._snaps for h in snap.parts if h.name == err.part and not h.in_memory
        ]
        for table, h in candidates:
            if len(candidates) > 1:
                try:
                    h.reader.verify_all()
                    continue  # healthy: the damage is in a namesake of another table
                except CorruptPartError as e:
                    err = e
            table.quarantine(h.part_id, err.with_engine(self.name), stage="query")
            return

    # -- maintenance -------------------------------------------------------------------------
    def merge_now(self, *, force: bool = True) -> int:
        """Merge now. `force`: every table with 2+ parts into one part; else one policy round."""
        self.store._check_process()
        merges = 0
        for t in self.tables():
            # A merge that met a damaged input quarantined it and returned None: choose again from
            # the remaining parts. Each round removes a part, so this ends.
            while True:
                infos = t.part_infos()
                ids = [p.part_id for p in infos] if force else self.store._pick(self, infos)
                if len(ids) < 2:
                    break
                if t.merge(ids) is not None:
                    merges += 1
                    break
        return merges

    def apply_retention(self, now_ns: int | None = None) -> int:
        """Drop whole segments that ended before now - retention. Returns segments dropped."""
        self.store._check_process()
        if self.engine.retention_ns is None:
            return 0
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - self.engine.retention_ns
        dropped = 0
        for (dataset, start), t in list(self._tables.items()):
            if start + self.engine.segment_interval_ns > cutoff:
                continue
            with self._lock:
                self._tables.pop((dataset, start), None)
                self._dropping.add((dataset, start))
            # Queries still reading the segment keep it until they finish; then it goes.
            t.close(on_released=lambda t=t, key=(dataset, start): self._remove_segment(t, key))
            dropped += 1
            self.store.metrics.inc("lamina_dropped_segments_total", engine=self.name)
        return dropped

    def _remove_segment(self, t: Table, key: tuple[str, int]) -> None:
        """Rename first (atomic): a crash mid-delete leaves a *.dropping directory, removed at the
        next open, never a segment whose manifest lists parts that are half gone."""
        fs = self.store.fs
        seg_dir = posixpath.dirname(t.path)
        doomed = seg_dir + names.DROPPING_SUFFIX
        try:
            self.store._before_commit()  # the rename is this drop's commit point
            fs.replace(seg_dir, doomed)
            # Load-bearing: the rename must be durable before any file inside is unlinked, or a
            # power loss could bring back the segment's name with some of its files gone. The
            # unlinks themselves need no barrier: a *.dropping directory is finished at open.
            fsync_dir(fs, posixpath.dirname(seg_dir))
            rmtree(fs, doomed)
        except (OSError, LaminaError) as e:  # the next open finishes it (_discover)
            log.warning("could not remove expired segment {}: {}", seg_dir, e)
        finally:
            with self._lock:
                self._dropping.discard(key)

    def stats(self) -> EngineStats:
        parts = rows = size = buffered = quarantined = 0
        tables = self.tables()
        for t in tables:
            for h in t.live_parts:
                parts += 1
                rows += h.reader.meta.rows
                size += h.reader.meta.data_size()
            buffered += t.pending_rows
            cdir = posixpath.join(t.path, names.CORRUPT_DIR)
            if self.store.fs.is_dir(cdir):
                quarantined += len(self.store.fs.listdir(cdir))
        return EngineStats(len(tables), parts, rows, size, buffered, quarantined)

    def close(self) -> None:
        for t in self.tables():
            t.close()


@attrs.frozen
class PreparedWrite:
    """A validated batch of one engine's dataset, not yet buffered (`EngineHandle.prepare`)."""

    handle: EngineHandle
    dataset: str
    rows: dict[str, Any]
    rows_count: int


def _own(rows: dict[str, Any]) -> dict[str, Any]:
    """Copy the validated columns: the buffer must not alias arrays the caller may reuse."""
    return {
        k: ({t: c.copy() for t, c in v.items()} if isinstance(v, dict) else v.copy()) for k, v in rows.items()
    }


class Store:
    def __init__(
        self,
        path: str,
        *,
        fs: FileSystem | None = None,
        registry: Registry | None = None,
        engines: Iterable[Engine] | None = None,
        background: bool = True,
        flush_interval_s: float = 1.0,
        merge_interval_s: float = 1.0,
        allow_rollback: bool = False,
        auto_salvage: bool = False,
        max_open_files: int | None = None,
        disk_watermarks: Watermarks | None = Watermarks(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        raw = fs or OSFileSystem()
        self.path = absolute(path) if isinstance(raw, OSFileSystem) else posixpath.normpath(path)
        #: Every mutation below the store's root refuses to pass through a symlink (io/confined.py).
        self.fs = confined(raw, self.path)
        #: Read descriptors of every part of the store, at most `max_open_files` idle ones
        #: (default: a quarter of the process's soft limit, see io/descriptors.py).
        self.descriptors = DescriptorCache(self.fs, max_open_files)
        #: Refuses writes above the high watermark of the disk, and merges that cannot fit (disk.py).
        self.disk = DiskGuard(self.fs, self.path, disk_watermarks)
        self._pid = os.getpid()
        if registry is None:
            registry = Registry()
            if engines is None:
                registry.load_entry_points()
        for e in engines or ():
            registry._add_engine(e, "<direct>")
        self.registry = registry
        self.metrics = Metrics()
        self.allow_rollback = allow_rollback
        self.auto_salvage = auto_salvage
        self.flush_interval_s, self.merge_interval_s = flush_interval_s, merge_interval_s
        self._closed = False
        self._handles: dict[str, EngineHandle] = {}
        self._backoff: dict[str, tuple[float, float]] = {}
        self._groups: dict[tuple[str, str], FlushGroup] = {}
        self._groups_lock = threading.Lock()
        # No barrier for the store's own directory and lamina.json: nothing in an empty store
        # needs to survive, and everything that must (a table, a dataset definition, a
        # transaction intent) is created with makedirs_durable, which fsyncs every level of its
        # path from the file system root down, this store's directory included. A barrier here
        # was always masked by that one (the barrier-mutation test could not observe it).
        makedirs(self.fs, self.path)
        self._lock = self._take_lock(raw)
        try:
            self._init_dir()
            # before any table recovers: a table removes part directories its manifest does not
            # list, and an interrupted multi-table transaction's parts are exactly those
            txn.recover(self.fs, self.path)
            for name in sorted(self.registry.engines):
                self.engine(name)._discover()
        except BaseException:
            for h in self._handles.values():
                h.close()
            self.descriptors.close()
            self._release_lock()
            raise
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._background, name="lamina-background", daemon=True)
            self._thread.start()

    def _take_lock(self, raw: FileSystem) -> FileLock:
        """Lock the store directory itself (not a lock file, which could be unlinked from under a
        live writer and let a second one in), refusing a second open in this process by name."""
        self._identity = _identity(raw, self.path)
        with _open_lock:
            other = _open_stores.get(self._identity)
            if other is not None and (o := other()) is not None and not o._closed:
                raise StoreAlreadyOpenError(self.path)
            lock = lock_store(self.fs, self.path)
            _open_stores[self._identity] = weakref.ref(self)
        return lock

    def _release_lock(self) -> None:
        with _open_lock:
            if (ref := _open_stores.get(self._identity)) is not None and ref() is self:
                del _open_stores[self._identity]
        self._lock.release()

    def _check_process(self) -> None:
        """Refuse use from a forked child: its copy of the buffers is the parent's, and the
        parent goes on writing; both flushing them would duplicate rows, and commits from two
        processes would race on the manifests."""
        if os.getpid() != self._pid:
            raise ForkedStoreError(self.path, self._pid)

    def _before_commit(self) -> None:
        """Checked right before every commit point (and every deletion): this process still
        owns the store. Confinement looks at the directories on the way afresh from here on
        (io/confined.py remembers directories only between two commits)."""
        self._check_process()
        self._lock.verify()
        self.fs.revalidate()

    def _init_dir(self) -> None:
        desc = posixpath.join(self.path, names.STORE_DESCRIPTOR)
        if self.fs.exists(desc):
            try:
                data = json.loads(read_record_file(self.fs, desc))
                version = data["format_version"]
            except (ValueError, KeyError, TypeError) as e:
                raise LaminaError(f"{desc} is not a Lamina store descriptor: {e}") from None
            if version != DESCRIPTOR_VERSION:
                raise LaminaError(
                    f"{desc}: store format {version} is not supported "
                    f"(this Lamina reads {DESCRIPTOR_VERSION})"
                )
            return
        # Never adopt a directory that is not a store (SPEC §10.10). What an interrupted first
        # open may have left is allowed: the descriptor's tmp file, a legacy lock file, and the
        # directories of installed engines and of transactions (a power cut can keep a table's
        # directories and lose the descriptor, whose name had no barrier of its own yet).
        ours = {names.STORE_DESCRIPTOR + TMP_SUFFIX, names.STORE_LOCK, names.LOST_FOUND}
        dirs = {names.TXN_DIR, *self.registry.engines}
        strays = [
            n
            for n in self.fs.listdir(self.path)
            if n not in ours and not (n in dirs and self.fs.kind(posixpath.join(self.path, n)) == DIR)
        ]
        if strays:
            raise NotAStoreError(
                self.path,
                f"it is not empty ({', '.join(strays[:5])}{', ...' if len(strays) > 5 else ''}) and holds no "
                f"{names.STORE_DESCRIPTOR}; refusing to turn it into a store: open an empty or new directory",
            )
        body = {
            "format_version": DESCRIPTOR_VERSION,
            "created_by": f"lamina {__version__}",
            "created_ns": time.time_ns(),
        }
        # Atomic, its bytes fsynced (a torn descriptor would stop every open), but its name takes
        # no directory barrier of its own: see __init__. A descriptor that a power loss takes
        # before the first table exists is simply written again by the next open.
        write_atomic(self.fs, desc, json.dumps(body, indent=1).encode(), sync_dir=False)

    def engine(self, name: str) -> EngineHandle:
        self._check_open()
        h = self._handles.get(name)
        if h is None:
            h = self._handles[name] = EngineHandle(self, self.registry.engine(name))
        return h

    @property
    def engines(self) -> list[str]:
        return sorted(self.registry.engines)

    def flush(self) -> None:
        for h in list(self._handles.values()):
            h.flush()

    def couple(self, members: Iterable[tuple[str, str]]) -> FlushGroup:
        """Flush the given (engine, dataset) pairs always together, in one transaction (txn.py):
        after any crash either all of a flush's new parts are live or none is. Every flush of a
        member (`flush()`, background, close) then flushes the whole group. Declaring the same
        group again returns it; a pair cannot belong to two groups."""
        mem = tuple(dict.fromkeys(members))
        if len(mem) < 2:
            raise InvalidInputError("members", "a flush group needs at least two (engine, dataset) pairs")
        for engine, dataset in mem:
            self.engine(engine)  # UnknownEngineError names it
            if not names.valid_dataset(dataset):
                raise InvalidInputError("dataset", f"{dataset!r} is not a valid dataset name", engine=engine)
        with self._groups_lock:
            same = self._groups.get(mem[0])
            if same is not None and set(same.members) == set(mem):
                return same
            taken = [m for m in mem if m in self._groups]
            if taken:
                raise InvalidInputError(
                    "members", f"{taken[0]} already belongs to another flush group", engine=taken[0][0]
                )
            group = FlushGroup(self, mem)
            for m in mem:
                self._groups[m] = group
            return group

    def _group_of(self, engine: str, dataset: str) -> FlushGroup | None:
        return self._groups.get((engine, dataset))

    def stats(self) -> StoreStats:
        return StoreStats(
            engines={n: h.stats() for n, h in sorted(self._handles.items())},
            flushes=int(self.metrics.value("lamina_flushes_total")),
            merges=int(self.metrics.value("lamina_merges_total")),
            corrupt_parts=int(self.metrics.value("lamina_corrupt_parts_total")),
        )

    # -- quarantine management ---------------------------------------------------------------
    def quarantined(self) -> list[QuarantinedPart]:
        """Every part in a corrupt/ directory of this store, with its reason."""
        self._check_open()
        tables = [t for h in self._handles.values() for t in h.tables()]
        return list_quarantined(self.fs, tables)

    def _find_quarantined(self, spec: str) -> QuarantinedPart:
        parts = self.quarantined()
        hits = [q for q in parts if spec in (q.spec, q.part, q.path)]
        if len(hits) != 1:
            known = ", ".join(q.spec for q in parts) or "none"
            what = "is ambiguous" if hits else "matches no quarantined part"
            raise LaminaError(f"{spec!r} {what}; quarantined parts: {known}")
        return hits[0]

    def _table_of(self, q: QuarantinedPart) -> Table:
        return next(t for t in self.engine(q.engine).tables(q.dataset) if t.path == q.table)

    def salvage(self, spec: str) -> SalvageReport:
        """Commit every verifiable row of a quarantined part into its table (see salvage.py)."""
        q = self._find_quarantined(spec)
        return salvage(self._table_of(q), q.part)

    def restore(self, spec: str) -> SalvageReport:
        """Put a quarantined part's rows back, only if every one of them verifies."""
        q = self._find_quarantined(spec)
        return salvage(self._table_of(q), q.part, require_complete=True)

    def drop_quarantined(self, spec: str, *, force: bool = False) -> QuarantinedPart:
        """Delete a quarantined part. Unless it was salvaged, `force` is required: rows go."""
        self._before_commit()  # a deletion: only by the process that owns the store
        q = self._find_quarantined(spec)
        if not q.salvaged and not force:
            raise LaminaError(
                f"{q.spec} was not salvaged: dropping it loses its rows; salvage it first or force"
            )
        drop_quarantined(self.fs, q)
        return q

    def _check_open(self) -> None:
        self._check_process()
        if self._closed:
            raise StoreClosedError(f"store {self.path} is closed")

    def _pick(self, handle: EngineHandle, infos: list[Any]) -> list[int]:
        chosen = self.registry.pm.hook.lamina_merge_policy(engine=handle.engine, parts=infos)
        return list(chosen) if chosen is not None else select_parts(infos, handle.engine.merge_policy)

    # -- background work ---------------------------------------------------------------------
    def _wake(self) -> None:
        if self._thread is not None:
            self._wakeup.set()

    def _background(self) -> None:
        last_merge = last_retention = 0.0
        while not self._closed:
            self._wakeup.wait(0.2)
            self._wakeup.clear()
            if self._closed:
                return
            now = time.monotonic()
            for h in list(self._handles.values()):
                for t in h.tables():
                    if t.pending_rows and (
                        t.pending_rows >= h.engine.flush_rows or t.pending_age >= self.flush_interval_s
                    ):
                        group = self._group_of(h.name, t.dataset)
                        if group is not None:
                            self._guarded(f"flush group {group.members}", group.flush)
                        else:
                            self._guarded(f"flush {t.path}", t.flush)
            if now - last_merge >= self.merge_interval_s:
                last_merge = now
                for h in list(self._handles.values()):
                    for t in h.tables():
                        self._guarded(f"merge {t.path}", lambda h=h, t=t: self._merge_round(h, t))
            if now - last_retention >= 60:
                last_retention = now
                for h in list(self._handles.values()):
                    self._guarded(f"retention {h.name}", h.apply_retention)

    def _merge_round(self, h: EngineHandle, t: Table) -> None:
        ids = self._pick(h, t.part_infos())
        if len(ids) >= 2:
            t.merge(ids)  # a damaged input is quarantined inside; the next round retries

    def _guarded(self, what: str, fn: Any) -> None:
        """Run background work; never let it kill the thread, back off 1 s doubling to 60 s."""
        until, delay = self._backoff.get(what, (0.0, 0.0))
        if time.monotonic() < until:
            return
        try:
            fn()
            self._backoff.pop(what, None)
        except Exception as e:
            delay = min(60.0, max(1.0, delay * 2))
            self._backoff[what] = (time.monotonic() + delay, delay)
            log.opt(exception=e).error("background {} failed; retrying in {:.0f}s", what, delay)

    def close(self) -> None:
        """Flush buffered rows, stop background work, release every part.

        In a forked child it only lets go of its copy of the handle: the buffered rows and the
        lock are the parent's, which goes on using them."""
        if self._closed:
            return
        if os.getpid() != self._pid:
            self._closed = True
            self._lock.abandon()
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._thread is not None:
                self._wakeup.set()
                self._thread.join()
            for h in self._handles.values():
                h.close()
            self.descriptors.close()
            self._release_lock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: str, **kwargs: Any) -> Store:
    """Open (creating if needed) the store at `path`; engines are found by entry point."""
    return Store(path, **kwargs)
