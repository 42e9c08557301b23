"""`lamina check`: a read-only fsck of a store.

`check_store` walks every table directory (`<root>/<engine>/<dataset>/seg-*/shard-*`), verifies its
newest manifest, and opens every listed part the way the store would (commit record, file sizes,
small-file checksums); `deep=True` also reads, checksums and decodes every frame.

It never changes anything: no recovery, no quarantine, no clean-up, no manifest written. It is safe
to run against a store another process has open: a live store deletes a part only after committing a
manifest without it, so a part that fails while no longer listed in the newest manifest was retired
(merged, quarantined) under the check and is not reported; new parts being written show up as
unlisted leftovers (info).

What it finds is a list of `Problem`s, each with a severity:

- `damage`: the store would refuse to open (damaged newest manifest or descriptor, a listed part
  gone), or a listed part fails validation (it would be quarantined at the next open or read);
- `warning`: needs an operator's eye but loses nothing more (parts already in `corrupt/`, foreign
  files the store leaves untouched, a quarantine cut short by a crash);
- `info`: what the next open cleans up by itself (unlisted part directories, `*.tmp` files, segments
  being dropped) and tables skipped because their engine is not installed.
"""

from __future__ import annotations

import errno
import json
import posixpath
import time
from enum import StrEnum

import attrs

from lamina import names
from lamina.datasets import DATASET_FILE, DatasetError, engine_for
from lamina.engine import Engine
from lamina.errors import CorruptPartError, EnvironmentIOError, NotAStoreError
from lamina.format.part_meta import SUPPORTED_VERSIONS, Manifest, PartMeta, QuarantineReason
from lamina.format.part_reader import DirSource, PartReader
from lamina.format.records import RecordError, load_record, read_record_file
from lamina.io.confined import confined
from lamina.io.fs import DIR, FILE, FileSystem, OSFileSystem, absolute, proves_damage
from lamina.plugins import Registry, load_registry
from lamina.store import DESCRIPTOR_VERSION
from lamina.table import misplacement

#: Tries to read a table's newest manifest while a live store keeps committing (and pruning).
_ATTEMPTS = 5


class Severity(StrEnum):
    DAMAGE = "damage"
    #: Not damage, but the store is not as Lamina keeps it, or the check could not look: a foreign
    #: entry, an environment error (permissions, descriptors, EIO) that stopped a read.
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Kind(StrEnum):
    """What a problem is about. `corrupt_part` carries a `CorruptionReason` in `reason`."""

    DESCRIPTOR = "descriptor"
    CORRUPT_MANIFEST = "corrupt_manifest"
    NO_MANIFEST = "no_manifest"
    CORRUPT_PART = "corrupt_part"
    MISSING_PART = "missing_part"
    #: A valid part in a directory that does not match it (a renamed dataset or segment).
    MISPLACED_PART = "misplaced_part"
    IO_ERROR = "io_error"
    #: The OS refused a read for a reason that is not damage (EACCES, EMFILE, EIO, ...).
    ENVIRONMENT = "environment"
    INTERRUPTED_QUARANTINE = "interrupted_quarantine"
    QUARANTINED = "quarantined"
    UNLISTED_PART = "unlisted_part"
    TMP_FILE = "tmp_file"
    DROPPING_SEGMENT = "dropping_segment"
    FOREIGN_ENTRY = "foreign_entry"
    ENGINE_NOT_INSTALLED = "engine_not_installed"
    BUSY = "busy"
    #: A dataset's `dataset.json` (per-dataset options) is missing or damaged.
    DATASET_OPTIONS = "dataset_options"
    PENDING_TRANSACTION = "pending_transaction"


@attrs.frozen
class Problem:
    severity: Severity
    kind: Kind
    #: Table directory relative to the store root ("trace/default/seg-20250101/shard-0"), or the
    #: store-level path the problem concerns.
    table: str
    part: str = ""
    file: str = ""
    #: Byte offset of the damage in `file`; -1 when it concerns the whole file.
    offset: int = -1
    #: For `corrupt_part`: a `CorruptionReason` value (checksum, size_mismatch, ...).
    reason: str = ""
    detail: str = ""
    expected: str = ""
    actual: str = ""

    @property
    def is_damage(self) -> bool:
        return self.severity is Severity.DAMAGE

    @property
    def needs_attention(self) -> bool:
        """Damage or an error: what makes a check not OK."""
        return self.severity in (Severity.DAMAGE, Severity.ERROR)


@attrs.frozen
class TableSummary:
    path: str  # relative to the store root
    engine: str
    dataset: str
    #: "ok", "damaged", or "skipped: engine not installed".
    status: str
    epoch: int = 0
    parts: int = 0
    rows: int = 0
    bytes: int = 0


@attrs.frozen
class CheckReport:
    store: str
    deep: bool
    ok: bool
    problems: list[Problem]
    parts_checked: int
    frames_checked: int
    tables: list[TableSummary]
    seconds: float

    @property
    def damage(self) -> list[Problem]:
        return [p for p in self.problems if p.is_damage]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]


def _s(v: object) -> str:
    return "" if v is None else str(v)


def _os_problem(e: OSError) -> tuple[Severity, Kind]:
    """Damage only when the error proves it (io/fs.py `proves_damage`); else the environment."""
    return (Severity.DAMAGE, Kind.IO_ERROR) if proves_damage(e) else (Severity.ERROR, Kind.ENVIRONMENT)


def _part_problem(table: str, err: CorruptPartError) -> Problem:
    return Problem(
        Severity.DAMAGE,
        Kind.CORRUPT_PART,
        table,
        part=err.part,
        file=err.file,
        offset=err.offset,
        reason=err.reason.value,
        detail=err.detail,
        expected=_s(err.expected),
        actual=_s(err.actual),
    )


@attrs.define
class _TableResult:
    summary: TableSummary
    problems: list[Problem]
    parts: int = 0
    frames: int = 0


class _Checker:
    def __init__(self, fs: FileSystem, root: str, registry: Registry, deep: bool) -> None:
        self.fs, self.root, self.registry, self.deep = fs, root, registry, deep
        self.problems: list[Problem] = []
        self.tables: list[TableSummary] = []
        self.parts = self.frames = 0

    def rel(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    def add(self, severity: Severity, kind: Kind, where: str, **kw: object) -> None:
        self.problems.append(Problem(severity, kind, where, **kw))  # type: ignore[arg-type]

    def listdir(self, path: str) -> list[str]:
        try:
            return self.fs.listdir(path)
        except OSError as e:
            self.add(*_os_problem(e), self.rel(path), detail=f"cannot list: {e}")
            return []

    # -- store level -------------------------------------------------------------------------
    def run(self) -> None:
        self.check_descriptor()
        for name in self.listdir(self.root):
            path = posixpath.join(self.root, name)
            kind = self.fs.kind(path)
            if kind is None:
                continue  # gone since the listing (a live store at work)
            if name == names.STORE_DESCRIPTOR or (name == names.STORE_LOCK and kind == FILE):
                continue  # (lamina.lock: what Lamina before 0.2 locked; harmless)
            if name == names.LOST_FOUND and kind == DIR:
                continue  # a store at the root of its own file system
            if name == names.TXN_DIR and kind == DIR:
                self.check_txn_dir(path)
            elif name == names.TXN_DIR or (name in self.registry.engines and kind != DIR):
                self.add(
                    Severity.DAMAGE,
                    Kind.FOREIGN_ENTRY,
                    name,
                    reason=kind or "",
                    detail=f"a {kind} where Lamina's {name} directory belongs: the store refuses to open",
                )
            elif name.endswith(names.TMP_SUFFIX) and kind == FILE:
                self.add(Severity.INFO, Kind.TMP_FILE, name, detail="leftover of an interrupted atomic write")
            elif kind == DIR:
                self.check_engine_dir(name, path)
            else:
                self.foreign(name, kind)

    def foreign(self, where: str, kind: str | None, what: str = "a Lamina file") -> None:
        """An entry Lamina did not make: an error (not damage: nothing of the store is lost, but
        it is not as Lamina keeps it, and rows in it, if any, are not served)."""
        self.add(
            Severity.ERROR,
            Kind.FOREIGN_ENTRY,
            where,
            reason=kind or "",
            detail=f"a {kind} that is not {what}; left untouched (rows in it, if any, are not served)",
        )

    def refused(self, where: str, kind: str | None, what: str) -> None:
        """An entry named like Lamina's own that is not what Lamina made: the store refuses to
        open until it is moved (damage: rows under it are not served)."""
        self.add(
            Severity.DAMAGE,
            Kind.FOREIGN_ENTRY,
            where,
            reason=kind or "",
            detail=f"a {kind} where {what} belongs (or another shard, never read): the store refuses to "
            "open until it is moved away or renamed back",
        )

    def check_txn_dir(self, path: str) -> None:
        """Intents of multi-table transactions a crash interrupted (lamina/txn.py): their parts
        show up as unlisted below, but the next open commits them instead of removing them."""
        from lamina.format.records import RecordError, load_record
        from lamina.txn import INTENT_VERSION, Intent

        for name in self.listdir(path):
            if names.parse_intent_name(name) is None:
                continue
            rel = self.rel(posixpath.join(path, name))
            try:
                intent = load_record(self.fs.read_file(posixpath.join(path, name)), Intent, (INTENT_VERSION,))
            except (RecordError, OSError) as e:
                self.add(Severity.DAMAGE, Kind.PENDING_TRANSACTION, rel, detail=f"damaged intent: {e}")
                continue
            listed = ", ".join(f"{p.table}/{names.part_name(p.part)}" for p in intent.parts)
            self.add(
                Severity.INFO,
                Kind.PENDING_TRANSACTION,
                rel,
                detail=f"interrupted transaction; the next open commits its parts ({listed})",
            )

    def check_descriptor(self) -> None:
        try:
            data = json.loads(read_record_file(self.fs, posixpath.join(self.root, names.STORE_DESCRIPTOR)))
            version = data["format_version"]
        except EnvironmentIOError as e:
            self.add(Severity.ERROR, Kind.ENVIRONMENT, names.STORE_DESCRIPTOR, detail=str(e))
            return
        except (ValueError, KeyError, TypeError, OSError) as e:
            self.add(
                Severity.DAMAGE,
                Kind.DESCRIPTOR,
                names.STORE_DESCRIPTOR,
                detail=f"unreadable store descriptor ({type(e).__name__}: {e}); the store will not open",
            )
            return
        if version != DESCRIPTOR_VERSION:
            self.add(
                Severity.DAMAGE,
                Kind.DESCRIPTOR,
                names.STORE_DESCRIPTOR,
                reason="format_version",
                detail=f"store format {version!r} is not supported (this Lamina reads {DESCRIPTOR_VERSION})",
                expected=str(DESCRIPTOR_VERSION),
                actual=str(version),
            )

    def check_engine_dir(self, engine_name: str, path: str) -> None:
        engine = self.registry.engines.get(engine_name)
        if engine is None and not self.looks_like_engine(path):
            self.foreign(engine_name, DIR, "an engine's directory (no segment tables inside)")
            return
        tables = list(self.table_dirs(path))
        if engine is None:
            self.add(
                Severity.INFO,
                Kind.ENGINE_NOT_INSTALLED,
                engine_name,
                detail=f"{len(tables)} table(s) skipped: engine {engine_name!r} is not installed",
            )
        for dataset, tpath in tables:
            if engine is None:
                self.tables.append(
                    TableSummary(self.rel(tpath), engine_name, dataset, "skipped: engine not installed")
                )
            else:
                self.check_table(engine, dataset, tpath)

    def looks_like_engine(self, path: str) -> bool:
        """An engine that is not installed still has the shape <dataset>/seg-*/shard-0."""
        try:
            return any(
                self.fs.is_dir(posixpath.join(path, d, s, names.shard_name(0)))
                for d in self.fs.listdir(path)
                if self.fs.is_dir(posixpath.join(path, d))
                for s in self.fs.listdir(posixpath.join(path, d))
                if names.parse_segment_name(s) is not None
            )
        except OSError:
            return False

    def table_dirs(self, engine_path: str) -> list[tuple[str, str]]:
        """(dataset, table path) of every table under an engine directory; reports strays."""
        out = []
        for dataset in self.listdir(engine_path):
            dpath = posixpath.join(engine_path, dataset)
            dkind = self.fs.kind(dpath)
            if dkind is None:
                continue  # gone since the listing
            if names.valid_dataset(dataset) and dkind != DIR:
                self.add(
                    Severity.DAMAGE,
                    Kind.FOREIGN_ENTRY,
                    self.rel(dpath),
                    reason=dkind or "",
                    detail=f"a {dkind} where dataset {dataset!r} belongs: the store refuses to open",
                )
                continue
            if not names.valid_dataset(dataset):
                self.foreign(self.rel(dpath), dkind, "a dataset")
                continue
            for seg in self.listdir(dpath):
                spath = posixpath.join(dpath, seg)
                skind = self.fs.kind(spath)
                if seg == DATASET_FILE or skind is None:  # options (lamina.datasets); or gone (dropped)
                    continue
                if seg.endswith(names.DROPPING_SUFFIX) and skind == DIR:
                    self.add(
                        Severity.INFO,
                        Kind.DROPPING_SEGMENT,
                        self.rel(spath),
                        detail="retention drop cut short; removed at the next open",
                    )
                    continue
                if names.parse_segment_name(seg) is None:
                    self.foreign(self.rel(spath), skind, "a segment")
                    continue
                if skind != DIR:
                    self.refused(self.rel(spath), skind, "a segment directory")
                    continue
                for shard in self.listdir(spath):
                    tpath = posixpath.join(spath, shard)
                    n, tkind = names.parse_shard_name(shard), self.fs.kind(tpath)
                    if tkind is None:
                        continue  # its segment was dropped meanwhile
                    if n is None:
                        self.foreign(self.rel(tpath), tkind, "a shard")
                    elif n != 0 or tkind != DIR:
                        # Lamina serves shard-0 only: rows under any other name are never read
                        self.refused(self.rel(tpath), tkind, "shard-0, the one shard served,")
                    else:
                        out.append((dataset, tpath))
        return out

    # -- tables ------------------------------------------------------------------------------
    def check_table(self, engine: Engine, dataset: str, path: str) -> None:
        res = self.check_table_once(engine, dataset, path)
        self.problems.extend(res.problems)
        self.tables.append(res.summary)
        self.parts += res.parts
        self.frames += res.frames

    def newest_manifest(self, path: str) -> tuple[list[str], Manifest | None, list[Problem]]:
        """Table entries, the manifest the store would use, and what is wrong with the manifests.

        A newest manifest that vanishes while being read was pruned by a live store committing two
        epochs meanwhile: list again. A damaged newest one is damage (the store refuses to open);
        the parts are then checked against the newest older one that verifies, if any.
        """
        table = self.rel(path)
        for _ in range(_ATTEMPTS):
            entries = self.listdir(path)
            epochs = sorted(
                (e for n in entries if (e := names.parse_manifest_name(n)) is not None), reverse=True
            )
            if not epochs:
                parts = sorted(n for n in entries if names.parse_part_name(n) is not None)
                if any(self.fs.is_dir(posixpath.join(path, n)) for n in parts):
                    problem = Problem(
                        Severity.DAMAGE,
                        Kind.NO_MANIFEST,
                        table,
                        detail=f"no manifest, but {len(parts)} part directory(ies) ({', '.join(parts[:3])}"
                        f"{', ...' if len(parts) > 3 else ''}): every manifest was removed outside Lamina; "
                        "the store refuses to open this table; run `lamina repair` to rebuild it",
                    )
                else:
                    problem = Problem(
                        Severity.INFO,
                        Kind.NO_MANIFEST,
                        table,
                        detail="no manifest yet (nothing committed); written at the next open",
                    )
                return entries, None, [problem]
            out: list[Problem] = []
            for i, epoch in enumerate(epochs):
                fname = names.manifest_name(epoch)
                try:
                    data = self.fs.read_file(posixpath.join(path, fname))
                except FileNotFoundError:
                    break  # pruned under us: list again
                except OSError as e:
                    if not proves_damage(e):  # EACCES, EIO...: the check could not look
                        problem = Problem(
                            Severity.ERROR,
                            Kind.ENVIRONMENT,
                            table,
                            file=fname,
                            reason=errno.errorcode.get(e.errno or 0, ""),
                            detail=f"cannot read the newest manifest ({e}): not damage; parts not checked",
                        )
                        return entries, None, [*out, problem]
                    err: Exception = e
                else:
                    try:
                        m = load_record(data, Manifest, SUPPORTED_VERSIONS)
                        if m.epoch != epoch:
                            raise RecordError([f"epoch {m.epoch} in a file named for epoch {epoch}"])
                        if i > 0:
                            out.append(
                                Problem(
                                    Severity.INFO,
                                    Kind.CORRUPT_MANIFEST,
                                    table,
                                    file=fname,
                                    detail=f"parts checked against the older manifest epoch {epoch}",
                                )
                            )
                        return entries, m, out
                    except RecordError as e:
                        err = e
                if i == 0:
                    out.append(
                        Problem(
                            Severity.DAMAGE,
                            Kind.CORRUPT_MANIFEST,
                            table,
                            file=fname,
                            reason="format_version" if getattr(err, "version", False) else "metadata",
                            detail=f"newest manifest is damaged ({err}); the store refuses to open the table "
                            "(repair it, or open with allow_rollback=True)",
                        )
                    )
            else:
                return entries, None, out
        return (
            entries,
            None,
            [
                Problem(
                    Severity.WARNING,
                    Kind.BUSY,
                    table,
                    detail=f"manifests kept changing during the check ({_ATTEMPTS} tries); parts not checked",
                )
            ],
        )

    def still_listed(self, path: str, part_id: int) -> bool:
        """Is the part in the table's newest manifest now? A live store retires parts (merge,
        quarantine) and deletes them after committing a manifest without them, so a part that
        failed while no longer listed was simply retired under the check: nothing to report."""
        _, m, _ = self.newest_manifest(path)
        return m is None or part_id in m.parts

    def check_table_once(self, engine: Engine, dataset: str, path: str) -> _TableResult:
        table = self.rel(path)
        res = _TableResult(TableSummary(table, engine.name, dataset, "ok"), [])
        out = res.problems
        entries, manifest, manifest_problems = self.newest_manifest(path)
        out.extend(manifest_problems)
        live = set(manifest.parts) if manifest else set()
        # With no manifest at all, or only damaged ones, the next open refuses and removes
        # nothing: unlisted parts are leftovers only next to a manifest that verifies.
        cdir = posixpath.join(path, names.CORRUPT_DIR)
        corrupt = self.listdir(cdir) if self.fs.is_dir(cdir) else []

        # Leftovers and strays in the table directory.
        for name in entries:
            kind = self.fs.kind(posixpath.join(path, name))
            pid = names.parse_part_name(name)
            if kind is None:
                continue  # gone since the listing: a live store renamed or removed it (a tmp, a prune)
            if kind not in (FILE, DIR):
                listed = pid is not None and pid in live
                out.append(
                    Problem(
                        Severity.DAMAGE if listed else Severity.ERROR,
                        Kind.FOREIGN_ENTRY,
                        table,
                        part=name if listed else "",
                        file="" if listed else name,
                        reason=kind,
                        detail=f"a {kind} Lamina did not make; left untouched"
                        + (
                            "; it is listed as a live part, so the store refuses to open this table"
                            if listed
                            else ""
                        ),
                    )
                )
            elif name.endswith(names.TMP_SUFFIX) and kind == FILE:
                out.append(
                    Problem(
                        Severity.INFO,
                        Kind.TMP_FILE,
                        table,
                        file=name,
                        detail="leftover of an interrupted atomic write; removed at the next open",
                    )
                )
            elif pid is not None and kind == DIR:
                if pid not in live and manifest is not None:
                    out.append(
                        Problem(
                            Severity.INFO,
                            Kind.UNLISTED_PART,
                            table,
                            part=name,
                            detail="not in the manifest (uncommitted output, or a flush/merge in "
                            "progress); removed at the next open",
                        )
                    )
            elif pid is not None and pid in live:
                pass  # a file where a listed part belongs: checked (and reported) below
            elif (name != names.CORRUPT_DIR or kind != DIR) and (
                names.parse_manifest_name(name) is None or kind != FILE
            ):
                out.append(
                    Problem(
                        Severity.ERROR,
                        Kind.FOREIGN_ENTRY,
                        table,
                        file=name,
                        reason=kind or "",
                        detail=f"a {kind} Lamina did not make (or not where it belongs); left untouched",
                    )
                )

        # Parts already set aside.
        for name in corrupt:
            out.append(self.quarantined(table, posixpath.join(cdir, name), name))

        # Listed parts.
        # The schema the store uses for this dataset: the engine's own unless a plugin extends it.
        hook = self.registry.pm.hook
        try:  # an engine with per-dataset options reads parts with the dataset's schema
            engine = engine_for(self.fs, self.root, engine, dataset)
        except DatasetError as e:
            res.problems.append(
                Problem(Severity.DAMAGE, Kind.DATASET_OPTIONS, table, file=DATASET_FILE, detail=e.detail)
            )
            return res
        layout = hook.lamina_file_layout(engine=engine)
        schema = hook.lamina_block_schema(engine=engine, dataset=dataset) or engine.schema
        kinds = {c.name: c.kind for c in schema.columns}
        rows = size = 0
        for pid in sorted(live):
            pname = names.part_name(pid)
            ppath = posixpath.join(path, pname)
            if not self.fs.exists(ppath):
                if pname in corrupt:
                    problem = Problem(
                        Severity.WARNING,
                        Kind.INTERRUPTED_QUARANTINE,
                        table,
                        part=pname,
                        detail="listed but already in corrupt/; the next open completes it",
                    )
                else:
                    problem = Problem(
                        Severity.DAMAGE,
                        Kind.MISSING_PART,
                        table,
                        part=pname,
                        detail="listed in the manifest but its directory is missing (removed "
                        "outside Lamina); the store refuses to open this table",
                    )
                if self.still_listed(path, pid):
                    out.append(problem)
                continue
            res.parts += 1
            reader = None
            found: Problem | None = None
            try:
                reader = PartReader.open(
                    _IgnoringTmp(self.fs, ppath),
                    pname,
                    kinds=kinds,
                    key_filter=layout.key_filter,
                    engine=engine.name,
                )
                rows += reader.meta.rows
                size += reader.meta.data_size()
                found = self.misplaced(table, path, pname, reader.meta, engine, dataset)
                if self.deep and found is None:
                    res.frames += reader.verify_all(schema)
            except CorruptPartError as e:
                found = _part_problem(table, e)
            except OSError as e:
                severity, kind = _os_problem(e)
                found = Problem(
                    severity,
                    kind,
                    table,
                    part=pname,
                    file=posixpath.basename(e.filename or ""),
                    reason="io" if kind is Kind.IO_ERROR else errno.errorcode.get(e.errno or 0, ""),
                    detail=f"{type(e).__name__}: {e}",
                )
            except Exception as e:  # a reader bug must not abort the whole check
                found = Problem(
                    Severity.DAMAGE,
                    Kind.CORRUPT_PART,
                    table,
                    part=pname,
                    reason="decode",
                    detail=f"unexpected {type(e).__name__} while reading: {e}",
                )
            finally:
                if reader is not None:
                    reader.close()
            if found is not None and self.still_listed(path, pid):
                out.append(found)

        if manifest is not None:
            res.summary = attrs.evolve(
                res.summary, epoch=manifest.epoch, parts=len(live), rows=rows, bytes=size
            )
        if any(p.is_damage for p in out):
            res.summary = attrs.evolve(res.summary, status="damaged")
        return res

    def misplaced(
        self, table: str, path: str, part: str, meta: PartMeta, engine: Engine, dataset: str
    ) -> Problem | None:
        """What `Table._check_placement` refuses to open (the same rule, `table.misplacement`)."""
        start = names.parse_segment_name(posixpath.basename(posixpath.dirname(path))) or 0
        why = misplacement(meta, dataset, start, engine.segment_interval_ns)
        if why is None:
            return None
        return Problem(
            Severity.DAMAGE,
            Kind.MISPLACED_PART,
            table,
            part=part,
            detail=f"{why}: its directory was renamed or moved by hand; the store refuses to open this "
            "table until it is moved back",
        )

    def quarantined(self, table: str, path: str, name: str) -> Problem:
        try:
            r = load_record(
                self.fs.read_file(posixpath.join(path, names.REASON)), QuarantineReason, SUPPORTED_VERSIONS
            )
        except (OSError, RecordError) as e:
            return Problem(
                Severity.WARNING,
                Kind.QUARANTINED,
                table,
                part=name,
                detail=f"in corrupt/ without a readable reason.json ({e})",
            )
        return Problem(
            Severity.WARNING,
            Kind.QUARANTINED,
            table,
            part=name,
            file=r.file,
            offset=r.offset,
            reason=r.reason,
            expected=r.expected,
            actual=r.actual,
            detail=f"set aside {r.time} (stage {r.stage}): {r.detail}; see corrupt/{name}/reason.json",
        )


class _IgnoringTmp(DirSource):
    """A part directory as the next open will see it: `*.tmp` debris is removed there, not a
    reason to quarantine, so the checker does not count it as damage either."""

    def listing(self) -> dict[str, int]:
        return {n: size for n, size in super().listing().items() if not n.endswith(".tmp")}


def is_store(path: str, fs: FileSystem | None = None) -> bool:
    fs = fs or OSFileSystem()
    return fs.is_dir(path) and fs.exists(posixpath.join(path, names.STORE_DESCRIPTOR))


def check_store(
    path: str,
    *,
    deep: bool = False,
    fs: FileSystem | None = None,
    registry: Registry | None = None,
) -> CheckReport:
    """Check every table of the store at `path` without changing anything.

    `deep` also reads, checksums and decodes every frame of every part (reads all the data).
    `registry` defaults to the engines installed (entry points). Raises `NotAStoreError` if `path`
    has no `lamina.json`.
    """
    raw = fs or OSFileSystem()
    root = absolute(path) if isinstance(raw, OSFileSystem) else posixpath.normpath(path)
    fs = confined(raw, root)  # check writes nothing; confined all the same, for defence in depth
    if not fs.is_dir(root):
        raise NotAStoreError(root, "not a directory" if fs.exists(root) else "no such directory")
    if not fs.exists(posixpath.join(root, names.STORE_DESCRIPTOR)):
        raise NotAStoreError(root, f"no {names.STORE_DESCRIPTOR}")
    t0 = time.monotonic()
    checker = _Checker(fs, root, registry if registry is not None else load_registry(), deep)
    checker.run()
    return CheckReport(
        store=root,
        deep=deep,
        ok=not any(p.needs_attention for p in checker.problems),
        problems=checker.problems,
        parts_checked=checker.parts,
        frames_checked=checker.frames,
        tables=checker.tables,
        seconds=time.monotonic() - t0,
    )
