"""The commit protocol (SPEC §5), implemented once for flush, merge and every engine.

1. create the part directory, fsync its parent;
2. write every file through SeqWriters and close them (fsync);
3. write metadata.json atomically (tmp, fsync, rename, fsync the part directory);
   the part is complete but not live;
4. write the next manifest atomically: THE commit point;
5. retire replaced parts once no reader holds them, and prune old manifests. Cleanup only: no
   barrier, since whatever a power loss brings back is unlisted and the next open removes it
   (transaction recovery recognises a retired part as merged away first: txn.py).
A failure at any step removes the partial output; the previous manifest still describes a fully
valid table.
"""

from __future__ import annotations

import contextlib
import posixpath
import time

from lamina import names
from lamina.format.part_meta import FORMAT_VERSION, Manifest, PartMeta
from lamina.format.records import dump_record
from lamina.io.durable import SeqWriter, mkdir_durable, rmtree, write_atomic, write_file_durable
from lamina.io.fs import FileSystem


class DirSink:
    """A Sink writing a part directory through SeqWriters (merge outputs: streamed, not buffered)."""

    def __init__(self, fs: FileSystem, path: str) -> None:
        self.fs, self.path = fs, path
        mkdir_durable(fs, path)  # step 1
        self._writers: dict[str, SeqWriter] = {}

    def write(self, name: str, data: bytes | bytearray | memoryview) -> int:
        w = self._writers.get(name)
        if w is None:
            w = self._writers[name] = SeqWriter(self.fs, posixpath.join(self.path, name))
        return w.write(data)

    def sizes(self) -> dict[str, int]:
        return {n: w.bytes_written for n, w in self._writers.items()}

    def close(self) -> None:
        """Step 2's barrier: every file flushed and fsynced; the first error propagates."""
        err: BaseException | None = None
        for w in self._writers.values():
            try:
                w.close()
            except BaseException as e:  # close the rest, report the first
                err = err or e
        if err is not None:
            raise err

    def abort(self) -> None:
        for w in self._writers.values():
            w.abort()


def write_mem_part(fs: FileSystem, part_dir: str, files: dict[str, bytearray], meta: PartMeta) -> None:
    """Steps 1-3 for a memory part. On any failure the directory is removed and the error raised."""
    mkdir_durable(fs, part_dir)
    try:
        for name in sorted(files):
            write_file_durable(fs, posixpath.join(part_dir, name), files[name])
        publish(fs, part_dir, meta)
    except BaseException:
        remove_partial(fs, part_dir)
        raise


def publish(fs: FileSystem, part_dir: str, meta: PartMeta) -> None:
    """Step 3: the part's commit record, written last and atomically (fsyncs the part dir)."""
    write_atomic(fs, posixpath.join(part_dir, names.METADATA), dump_record(meta))


def remove_partial(fs: FileSystem, part_dir: str) -> None:
    """Best-effort removal of a failed output. No barrier: the output was never listed, so if a
    power loss brings it back, recovery removes it as an uncommitted leftover (SPEC §6)."""
    with contextlib.suppress(OSError):
        rmtree(fs, part_dir)


def write_manifest(
    fs: FileSystem,
    table_dir: str,
    epoch: int,
    parts: list[int],
    salvaged: list[int] | None = None,
    next_part_id: int = 0,
) -> None:
    """Step 4, the commit point."""
    m = Manifest(
        format_version=FORMAT_VERSION,
        epoch=epoch,
        parts=sorted(parts),
        created_ns=time.time_ns(),
        salvaged=sorted(salvaged or []),
        next_part_id=next_part_id,
    )
    write_atomic(fs, posixpath.join(table_dir, names.manifest_name(epoch)), dump_record(m))


def prune_manifests(fs: FileSystem, table_dir: str, keep_from: int) -> None:
    """Delete manifests older than `keep_from` (the previous epoch is kept for forensics).

    No barrier: pruning is cleanup, not part of any commit (SPEC §4 fsyncs an unlink only when its
    result must survive). The newest manifest alone decides what is live, so an old one that a
    power loss brings back changes nothing, and the next open prunes it again. The barrier-mutation
    test removed this fsync and no crash state could tell (tests/crash/test_barrier_mutation.py).
    """
    for name in fs.listdir(table_dir):
        e = names.parse_manifest_name(name)
        if e is not None and e < keep_from:
            fs.remove(posixpath.join(table_dir, name))
