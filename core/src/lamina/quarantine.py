"""Setting a damaged part aside: `corrupt/<part>/` plus `reason.json`. Never deleting it.

The move is a rename within the table directory (atomic); the manifest that drops the part is
written by the table afterwards. A crash in between leaves a part that is listed but sits in
`corrupt/`: recovery recognises it and finishes the job, so a part is quarantined exactly once.
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime

from lamina import __version__, names
from lamina.errors import CorruptPartError
from lamina.format.part_meta import FORMAT_VERSION, QuarantineReason
from lamina.format.records import dump_record
from lamina.io.durable import fsync_dir, mkdir_durable, write_atomic
from lamina.io.fs import FileSystem


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
    if not fs.exists(cdir):
        mkdir_durable(fs, cdir)
    dest = posixpath.join(cdir, part)
    n = 1
    while fs.exists(dest):  # a part ID is never reused, but an operator may restore by hand
        dest = posixpath.join(cdir, f"{part}.{n}")
        n += 1
    src = posixpath.join(table_dir, part)
    if fs.is_dir(src):
        fs.replace(src, dest)
        fsync_dir(fs, cdir)
        fsync_dir(fs, table_dir)
    else:
        mkdir_durable(fs, dest)
        if fs.exists(src):  # something that is not a directory sits where the part should be
            fs.replace(src, posixpath.join(dest, "original"))
            fsync_dir(fs, dest)
            fsync_dir(fs, table_dir)
    write_reason(fs, dest, reason)
    return dest


def write_reason(fs: FileSystem, path: str, reason: QuarantineReason) -> None:
    write_atomic(fs, posixpath.join(path, names.REASON), dump_record(reason))
