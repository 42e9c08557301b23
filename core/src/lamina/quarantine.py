"""Setting a damaged part aside: `corrupt/<part>/` plus `reason.json`. Never deleting it.

The move is a rename within the table directory (atomic); the manifest that drops the part is
written by the table afterwards. A crash in between leaves a part that is listed but sits in
`corrupt/`: recovery recognises it and finishes the job, so a part is quarantined exactly once.
"""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime
from typing import Any

import attrs

from lamina import __version__, names
from lamina.errors import CorruptPartError, ForeignEntryError
from lamina.format.part_meta import FORMAT_VERSION, QuarantineReason
from lamina.format.records import dump_record
from lamina.io.durable import fsync_dir, mkdir_durable, rmtree, write_atomic
from lamina.io.fs import DIR, FileSystem


def reason_record(
    err: CorruptPartError, *, engine: str, dataset: str, table: str, stage: str
) -> QuarantineReason:
    return QuarantineReason(
        format_version=FORMAT_VERSION,
        engine=engine,
        dataset=dataset,
        table=table,
        part=err.part,
        stage=stage,
        reason=err.reason.value,
        file=err.file,
        offset=err.offset,
        detail=err.detail,
        expected="" if err.expected is None else str(err.expected),
        actual="" if err.actual is None else str(err.actual),
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        lamina_version=__version__,
    )


def corrupt_dir(table_dir: str) -> str:
    return posixpath.join(table_dir, names.CORRUPT_DIR)


def move_to_corrupt(fs: FileSystem, table_dir: str, part: str, reason: QuarantineReason) -> str:
    """Move `part` into `corrupt/` and write its reason.json; returns the new path."""
    cdir = corrupt_dir(table_dir)
    kind = fs.kind(cdir)
    if kind is None:
        mkdir_durable(fs, cdir)
    elif kind != DIR:  # a file (or link) named corrupt: quarantined parts cannot go there
        raise ForeignEntryError(cdir, kind, "it is where quarantined parts go: move it away, then reopen")
    src = posixpath.join(table_dir, part)
    dest = posixpath.join(cdir, part)
    n = 1
    # A part ID is never reused, but an operator may restore by hand. For a stray file, an empty
    # directory is the first step of an earlier attempt at this very move that a crash cut short
    # (the file went back to the table with a power cut): reuse it rather than leave it beside.
    while fs.exists(dest) and (fs.is_dir(src) or not fs.is_dir(dest) or fs.listdir(dest)):
        dest = posixpath.join(cdir, f"{part}.{n}")
        n += 1
    if fs.is_dir(src):
        fs.replace(src, dest)
        fsync_dir(fs, cdir)
        fsync_dir(fs, table_dir)
    else:
        if not fs.exists(dest):
            mkdir_durable(fs, dest)
        if fs.exists(src):  # something that is not a directory sits where the part should be
            fs.replace(src, posixpath.join(dest, "original"))
            fsync_dir(fs, dest)
            fsync_dir(fs, table_dir)
    write_reason(fs, dest, reason)
    return dest


def write_reason(fs: FileSystem, path: str, reason: QuarantineReason) -> None:
    write_atomic(fs, posixpath.join(path, names.REASON), dump_record(reason))


@attrs.frozen
class QuarantinedPart:
    """A part in some table's corrupt/ directory, as `lamina quarantine list` shows it."""

    engine: str
    dataset: str
    table: str
    part: str
    path: str
    reason: dict[str, Any]
    bytes: int
    salvaged: bool

    @property
    def spec(self) -> str:
        """`engine/dataset/segment/part`: how the CLI names it."""
        seg = posixpath.basename(posixpath.dirname(self.table))
        return f"{self.engine}/{self.dataset}/{seg}/{self.part}"


def list_quarantined(fs: FileSystem, tables: list[Any]) -> list[QuarantinedPart]:
    out = []
    for t in tables:
        cdir = corrupt_dir(t.path)
        if not fs.is_dir(cdir):
            continue
        for name in fs.listdir(cdir):
            path = posixpath.join(cdir, name)
            try:
                reason = json.loads(fs.read_file(posixpath.join(path, names.REASON)))
            except (OSError, ValueError) as e:
                reason = {"reason": "unknown", "detail": f"reason.json unreadable: {e}"}
            pid = names.parse_part_name(name[:16])
            out.append(
                QuarantinedPart(
                    engine=t.engine.name,
                    dataset=t.dataset,
                    table=t.path,
                    part=name,
                    path=path,
                    reason=reason,
                    bytes=_tree_size(fs, path),
                    salvaged=pid is not None and pid in t.salvaged,
                )
            )
    return out


def _tree_size(fs: FileSystem, path: str) -> int:
    if not fs.is_dir(path):
        return fs.file_size(path)
    return sum(_tree_size(fs, posixpath.join(path, n)) for n in fs.listdir(path))


def drop_quarantined(fs: FileSystem, q: QuarantinedPart) -> None:
    """Delete a quarantined part for good (the operator's decision; rows not salvaged are lost)."""
    rmtree(fs, q.path)
    fsync_dir(fs, posixpath.dirname(q.path))
