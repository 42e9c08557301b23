"""`lamina repair`: rebuild a table's manifest from its parts when the manifest cannot be trusted.

Every part's commit record names the parts it was merged from (lineage). The live set is therefore
every valid part that no other valid part lists as a source: a merge output and its retired inputs
may both still be on disk (deletion had not happened yet), and the output wins because merges
preserve rows. Parts that fail validation are quarantined (stage `repair`), never deleted.

Used when open refuses a table: its newest manifest is damaged (instead of rolling back and losing
the last commit), or a listed part vanished (data lost outside Lamina; the rest is kept).
A part that was complete but not yet committed when the process died is included too: its rows
were never acknowledged, so either outcome is allowed. Lineage lists every ancestor that was still
on disk when a part was made (not only its direct inputs), so chains of merges resolve too.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import attrs

from lamina import __version__, names
from lamina.commit import write_manifest
from lamina.datasets import DatasetError, engine_for
from lamina.errors import CorruptionReason, CorruptPartError
from lamina.format.part_meta import SUPPORTED_VERSIONS, Manifest, PartMeta
from lamina.format.part_reader import DirSource, PartReader
from lamina.format.records import RecordError, load_record, read_record_file
from lamina.io.confined import confined
from lamina.io.durable import write_atomic
from lamina.io.fs import DIR, FILE, FileSystem
from lamina.log import get_logger
from lamina.quarantine import move_to_corrupt, reason_record
from lamina.schema import ColumnKind

log = get_logger(component="repair")


@attrs.frozen
class RepairResult:
    table: str
    epoch: int
    live: tuple[str, ...]
    retired: tuple[str, ...]
    quarantined: tuple[str, ...]


def table_needs_repair(fs: FileSystem, table_dir: str) -> str | None:
    """Why open would refuse this table (damaged newest manifest, missing listed part), or None."""
    entries = fs.listdir(table_dir)
    epochs = sorted(e for n in entries if (e := names.parse_manifest_name(n)) is not None)
    if not epochs:
        parts = [
            n
            for n in entries
            if names.parse_part_name(n) is not None and fs.is_dir(posixpath.join(table_dir, n))
        ]
        return f"no manifest, but {len(parts)} part directories" if parts else None
    path = posixpath.join(table_dir, names.manifest_name(epochs[-1]))
    try:
        m = load_record(read_record_file(fs, path), Manifest, SUPPORTED_VERSIONS)
    except RecordError as e:
        return f"newest manifest {names.manifest_name(epochs[-1])} is damaged: {e}"
    corrupt = posixpath.join(table_dir, names.CORRUPT_DIR)
    for pid in m.parts:
        pname = names.part_name(pid)
        if not fs.exists(posixpath.join(table_dir, pname)) and not fs.exists(posixpath.join(corrupt, pname)):
            return f"listed part {pname} is missing"
    return None


def rebuild_manifest(
    fs: FileSystem,
    table_dir: str,
    *,
    engine: str,
    dataset: str,
    kinds: dict[str, ColumnKind],
    key_filter: str | None,
) -> RepairResult:
    entries = fs.listdir(table_dir)
    epochs = [e for n in entries if (e := names.parse_manifest_name(n)) is not None]
    salvaged: set[int] = set()
    next_hint = 0
    for e in epochs:  # keep what readable manifests knew: salvage marks, the ID high-water mark
        try:  # an environment error (EACCES, EIO) stops the repair: it is not a damaged manifest
            m = load_record(
                read_record_file(fs, posixpath.join(table_dir, names.manifest_name(e))),
                Manifest,
                SUPPORTED_VERSIONS,
            )
        except RecordError:
            continue
        salvaged |= set(m.salvaged)
        next_hint = max(next_hint, m.next_part_id)
    cdir = posixpath.join(table_dir, names.CORRUPT_DIR)
    in_corrupt = {
        pid
        for n in (fs.listdir(cdir) if fs.is_dir(cdir) else [])
        if (pid := names.parse_part_name(n[:16])) is not None
    }
    metas = {}
    bad: list[tuple[str, CorruptPartError]] = []
    for name in entries:
        pid = names.parse_part_name(name)
        kind = fs.kind(posixpath.join(table_dir, name))
        if pid is None or kind not in (FILE, DIR):  # a symlink or FIFO is foreign: never touched
            continue
        try:
            reader = PartReader.open(
                DirSource(fs, posixpath.join(table_dir, name)),
                name,
                kinds=kinds,
                key_filter=key_filter,
                engine=engine,
            )
        except CorruptPartError as e:
            bad.append((name, e))
            continue
        metas[pid] = reader.meta
        reader.close()
    bad += _copies(metas)
    sources = {s for m in metas.values() for s in m.lineage}
    live = sorted(set(metas) - sources)
    salvaged |= sources & in_corrupt  # a salvaged part's lineage is its quarantined source
    # A damaged part that a valid part was merged from is retired debris (a deletion cut short):
    # its rows live in the output, and the next open removes it as unlisted. Only the others are
    # set aside.
    bad = [(n, e) for n, e in bad if names.parse_part_name(n) not in sources]
    for name, err in bad:
        rec = reason_record(
            err.with_engine(engine), engine=engine, dataset=dataset, table=table_dir, stage="repair"
        )
        move_to_corrupt(fs, table_dir, name, rec)
    # The counter continues from what manifests knew and what valid parts use. Names of damaged
    # or foreign entries do not count: a stray directory named ffffffffffffffff must not use up
    # the ID space (allocation skips any ID still in use anyway: `Table._id_taken`).
    seen = set(metas) | (in_corrupt if not next_hint else set())
    epoch = max(epochs, default=0) + 1
    write_manifest(fs, table_dir, epoch, live, sorted(salvaged), max(next_hint, max(seen, default=0) + 1))
    return RepairResult(
        table=table_dir,
        epoch=epoch,
        live=tuple(names.part_name(p) for p in live),
        retired=tuple(names.part_name(p) for p in sorted(sources & set(metas))),
        quarantined=tuple(n for n, _ in bad),
    )


def _fingerprint(m: PartMeta) -> tuple[object, ...]:
    """What a part is, whatever its directory is called or its record claims: its data (every
    file's size and checksum; meta.bin's covers every frame's, through the index) and the moment
    it was made. Two writes of the same rows differ in the latter; a copied directory does not."""
    files, sums = tuple(sorted(m.files.items())), tuple(sorted(m.checksums.items()))
    return (m.created_ns, m.rows, m.min_key, m.max_key, files, sums)


def _copies(metas: dict[int, PartMeta]) -> list[tuple[str, CorruptPartError]]:
    """Parts that are copies of another (same fingerprint): all but the lowest ID are removed
    from `metas` and returned, to be set aside, so the rebuilt manifest serves their rows once."""
    first: dict[tuple[object, ...], int] = {}
    out = []
    for pid in sorted(metas):
        original = first.setdefault(_fingerprint(metas[pid]), pid)
        if original != pid:
            del metas[pid]
            name = names.part_name(pid)
            detail = (
                f"a copy of part {names.part_name(original)} (same content, made at the same instant): "
                "serving both would return its rows twice"
            )
            out.append((name, CorruptPartError(name, names.METADATA, -1, CorruptionReason.METADATA, detail)))
    return out


def repair_descriptor(fs: FileSystem, root: str) -> str | None:
    """Rewrite a damaged `lamina.json` (a regular file that is empty, garbage or torn): it holds
    only the format version and when the store was created, so a fresh one loses nothing. One of
    an unsupported version, or an entry that is not a file, is left alone. Returns what was done."""
    path = posixpath.join(root, names.STORE_DESCRIPTOR)
    if fs.kind(path) != FILE:
        return None
    try:
        data = json.loads(read_record_file(fs, path))
        if isinstance(data, dict) and "format_version" in data:
            return None
    except (ValueError, TypeError):
        pass
    from lamina.store import DESCRIPTOR_VERSION

    body = {
        "format_version": DESCRIPTOR_VERSION,
        "created_by": f"lamina {__version__} (repair)",
        "created_ns": 0,
    }
    write_atomic(fs, path, json.dumps(body, indent=1).encode())
    log.warning("rewrote the damaged store descriptor {}", path)
    return f"rewrote the damaged {names.STORE_DESCRIPTOR}"


def repair_store(
    path: str, *, fs: FileSystem | None = None, registry: Any = None, actions: list[str] | None = None
) -> list[RepairResult]:
    """Rebuild the manifest of every table that open would refuse, and a damaged descriptor;
    returns the tables rebuilt (`actions`, if given, also receives a line per other fix).

    Takes the store's lock (nothing else may write meanwhile); tables of engines that are not
    installed are left alone (their schemas are needed to validate parts). Foreign entries,
    misplaced parts and environment errors are never "repaired": `lamina check` after a repair
    lists what is left and what to do about it.
    """
    from lamina.io.fs import OSFileSystem, absolute
    from lamina.plugins import Registry

    raw = fs or OSFileSystem()
    root = absolute(path) if isinstance(raw, OSFileSystem) else posixpath.normpath(path)
    fs = confined(raw, root)
    if registry is None:
        registry = Registry()
        registry.load_entry_points()
    from lamina.store import lock_store

    lock = lock_store(fs, root)
    out = []
    try:
        fixed = repair_descriptor(fs, root)
        if fixed is not None and actions is not None:
            actions.append(fixed)
        for engine_name, engine in sorted(registry.engines.items()):
            epath = posixpath.join(root, engine_name)
            if not fs.is_dir(epath):
                continue
            for dataset in fs.listdir(epath):
                dpath = posixpath.join(epath, dataset)
                for seg in fs.listdir(dpath) if fs.is_dir(dpath) else []:
                    tdir = posixpath.join(dpath, seg, names.shard_name(0))
                    if names.parse_segment_name(seg) is None or not fs.is_dir(tdir):
                        continue
                    if table_needs_repair(fs, tdir) is None:
                        continue
                    try:  # per-dataset options decide the schema parts are validated against
                        served = engine_for(fs, root, engine, dataset)
                    except DatasetError as e:
                        # without its options a dataset's parts cannot be validated: leave it alone
                        log.error("repair skips {}: {}", tdir, e)
                        continue
                    layout = registry.pm.hook.lamina_file_layout(engine=served)
                    schema = registry.pm.hook.lamina_block_schema(engine=served, dataset=dataset)
                    kinds = {c.name: c.kind for c in schema.columns}
                    out.append(
                        rebuild_manifest(
                            fs,
                            tdir,
                            engine=engine_name,
                            dataset=dataset,
                            kinds=kinds,
                            key_filter=layout.key_filter,
                        )
                    )
    finally:
        lock.release()
    return out
