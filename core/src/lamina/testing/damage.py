"""Named, reusable ways to damage a store on disk, for corruption tests of any engine.

Every helper works through a `FileSystem`: on `SimFS` it uses the simulator's fixture builders
(`truncate`, `corrupt`, `write_file`: durable at once, not counted as operations), on any other file
system (`OSFileSystem`) it reads the file and writes the damaged content back atomically through
`lamina.io.durable`. Damage a store while it is closed: a store that is open may hold file handles
that keep seeing the old bytes on a real disk.

The helpers that locate things (frames of a block-mode data file, granule frames of `primary.bin`)
read the index of a part that is still healthy, so call them before the damage they guide.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping

import attrs

from lamina import names
from lamina.commit import write_manifest
from lamina.format.part_meta import SUPPORTED_VERSIONS, Manifest, PartMeta
from lamina.format.part_reader import DirSource, PartReader
from lamina.format.records import dump_record, load_record
from lamina.io.durable import fsync_dir, mkdir_durable, write_atomic
from lamina.io.fs import FileSystem
from lamina.schema import ColumnKind

__all__ = [
    "Frame",
    "add_listed_part_without_metadata",
    "block_frames",
    "block_streams",
    "corrupt_bytes",
    "delete_file",
    "flip_bit",
    "forge_sizes",
    "granule_frames",
    "granule_stream_frames",
    "leave_metadata_tmp",
    "listed_parts",
    "newest_manifest",
    "part_dirs",
    "read_part_meta",
    "set_format_version",
    "stale_last_block",
    "table_dirs",
    "truncate_blocks",
    "truncate_file",
    "truncate_inside_block",
    "write_file",
    "write_part_meta",
    "zero_length",
]


@attrs.frozen(order=True)
class Frame:
    """One stored frame: its byte range in its file."""

    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


# -- raw file damage ------------------------------------------------------------------------------
def _put(fs: FileSystem, path: str, data: bytes | bytearray) -> None:
    """Write `path` with `data`, durably, replacing what is there."""
    builder = getattr(fs, "write_file", None)  # SimFS fixture builder: not an op
    if builder is not None:
        builder(path, data)
    else:
        write_atomic(fs, path, data)


def truncate_file(fs: FileSystem, path: str, size: int) -> None:
    """Cut `path` to `size` bytes (or zero-extend it), like a lost tail."""
    native = getattr(fs, "truncate", None)
    if native is not None:
        native(path, size)
        return
    data = fs.read_file(path)
    _put(fs, path, data[:size] + bytes(max(0, size - len(data))))


def zero_length(fs: FileSystem, path: str) -> None:
    """Leave `path` in place with no bytes at all."""
    truncate_file(fs, path, 0)


def corrupt_bytes(fs: FileSystem, path: str, offset: int, data: bytes) -> None:
    """Overwrite bytes of `path` in place (size unchanged), like bit rot or a bad sector."""
    native = getattr(fs, "corrupt", None)
    if native is not None:
        native(path, offset, data)
        return
    old = bytearray(fs.read_file(path))
    if offset < 0 or offset + len(data) > len(old):
        raise ValueError(f"corrupt({path!r}, {offset}, {len(data)} bytes) is outside the file ({len(old)})")
    old[offset : offset + len(data)] = data
    _put(fs, path, old)


def flip_bit(fs: FileSystem, path: str, offset: int, bit: int = 0) -> None:
    """Flip one bit of the byte at `offset` of `path`."""
    f = fs.open_read(path)
    try:
        byte = f.pread(offset, 1)
    finally:
        f.close()
    if len(byte) != 1:
        raise ValueError(f"offset {offset} is beyond the end of {path}")
    corrupt_bytes(fs, path, offset, bytes([byte[0] ^ (1 << bit)]))


def delete_file(fs: FileSystem, path: str) -> None:
    fs.remove(path)


def write_file(fs: FileSystem, path: str, data: bytes | bytearray) -> None:
    """Put a file with `data` at `path` (a stray file, a restored copy, a forged record)."""
    _put(fs, path, data)


# -- store layout ---------------------------------------------------------------------------------
def table_dirs(fs: FileSystem, root: str, engine: str, dataset: str = "default") -> list[str]:
    """Every table directory (segment x shard) of `engine`/`dataset`, sorted."""
    dpath = posixpath.join(root, engine, dataset)
    if not fs.is_dir(dpath):
        return []
    out = []
    for seg in fs.listdir(dpath):
        spath = posixpath.join(dpath, seg)
        if names.parse_segment_name(seg) is None or not fs.is_dir(spath):
            continue
        out += [
            posixpath.join(spath, s)
            for s in fs.listdir(spath)
            if names.parse_shard_name(s) is not None and fs.is_dir(posixpath.join(spath, s))
        ]
    return out


def part_dirs(fs: FileSystem, table_dir: str) -> list[str]:
    """Names of the part directories in a table directory (listed or not), sorted."""
    return [n for n in fs.listdir(table_dir) if names.parse_part_name(n) is not None]


def newest_manifest(fs: FileSystem, table_dir: str) -> Manifest:
    epochs = [e for n in fs.listdir(table_dir) if (e := names.parse_manifest_name(n)) is not None]
    if not epochs:
        raise FileNotFoundError(f"no manifest in {table_dir}")
    path = posixpath.join(table_dir, names.manifest_name(max(epochs)))
    return load_record(fs.read_file(path), Manifest, SUPPORTED_VERSIONS)


def listed_parts(fs: FileSystem, table_dir: str) -> list[str]:
    """Part names the newest manifest lists."""
    return [names.part_name(p) for p in newest_manifest(fs, table_dir).parts]


# -- metadata.json --------------------------------------------------------------------------------
def read_part_meta(fs: FileSystem, part_dir: str) -> PartMeta:
    return load_record(fs.read_file(posixpath.join(part_dir, names.METADATA)), PartMeta, SUPPORTED_VERSIONS)


def write_part_meta(fs: FileSystem, part_dir: str, meta: PartMeta) -> None:
    """Rewrite metadata.json from `meta`, with a valid body checksum (a forgery no record check sees)."""
    _put(fs, posixpath.join(part_dir, names.METADATA), dump_record(meta))


def forge_sizes(fs: FileSystem, part_dir: str, files: Iterable[str] | None = None) -> PartMeta:
    """Make metadata.json record the sizes the files have now (all listed files by default), so the
    cheap size check on open passes and only frame checksums or the strict reader can catch damage."""
    meta = read_part_meta(fs, part_dir)
    which = set(meta.files if files is None else files)
    sizes = {
        f: (fs.file_size(posixpath.join(part_dir, f)) if f in which else size)
        for f, size in meta.files.items()
    }
    forged = attrs.evolve(meta, files=sizes)
    write_part_meta(fs, part_dir, forged)
    return forged


def set_format_version(fs: FileSystem, part_dir: str, version: int = 99) -> None:
    """Rewrite metadata.json as if a Lamina of another format version had written it."""
    write_part_meta(fs, part_dir, attrs.evolve(read_part_meta(fs, part_dir), format_version=version))


def leave_metadata_tmp(fs: FileSystem, part_dir: str, data: bytes | None = None) -> str:
    """Leave a `metadata.json.tmp` inside the part, as an interrupted atomic write would (default
    content: the first half of the real metadata.json). Returns its path."""
    path = posixpath.join(part_dir, names.METADATA + names.TMP_SUFFIX)
    if data is None:
        real = fs.read_file(posixpath.join(part_dir, names.METADATA))
        data = real[: len(real) // 2]
    _put(fs, path, data)
    return path


def add_listed_part_without_metadata(
    fs: FileSystem, table_dir: str, files: Mapping[str, bytes] | None = None
) -> str:
    """Create a new part directory holding `files` but no metadata.json, and commit a manifest
    (the newest epoch + 1) that lists it next to the parts already listed. Returns its name."""
    manifest = newest_manifest(fs, table_dir)
    cdir = posixpath.join(table_dir, names.CORRUPT_DIR)
    seen = [*manifest.parts, *(names.parse_part_name(n) or 0 for n in fs.listdir(table_dir))]
    if fs.is_dir(cdir):
        seen += [names.parse_part_name(n[:16]) or 0 for n in fs.listdir(cdir)]
    pid = max(seen, default=0) + 1
    pname = names.part_name(pid)
    ppath = posixpath.join(table_dir, pname)
    mkdir_durable(fs, ppath)
    for fname, data in (files if files is not None else {names.PRIMARY: b"\x00" * 16}).items():
        _put(fs, posixpath.join(ppath, fname), data)
    fsync_dir(fs, ppath)
    write_manifest(fs, table_dir, manifest.epoch + 1, [*manifest.parts, pid])
    return pname


# -- locating frames ------------------------------------------------------------------------------
def _reader(fs: FileSystem, part_dir: str) -> PartReader:
    meta = read_part_meta(fs, part_dir)
    # Column kinds only matter for decoding values, which locating frames never does.
    kinds = {c: ColumnKind.BYTES for cols in meta.layout.values() for c in cols}
    return PartReader.open(DirSource(fs, part_dir), posixpath.basename(part_dir), kinds=kinds)


def block_streams(fs: FileSystem, part_dir: str) -> list[str]:
    """Data files of the part stored as one frame per block (e.g. trace `spans.bin`)."""
    return list(read_part_meta(fs, part_dir).block_streams)


def block_frames(fs: FileSystem, part_dir: str, fname: str) -> list[Frame]:
    """Every block frame of block-mode data file `fname`, in file order."""
    r = _reader(fs, part_dir)
    try:
        if fname not in r.meta.block_streams:
            raise ValueError(f"{fname} is not a block-mode data file of {part_dir}: {r.meta.block_streams}")
        col = r.blocks.entries[:, r.meta.block_streams.index(fname)]
        return sorted(Frame(int(e["offset"]), int(e["size"])) for e in col)
    finally:
        r.close()


def granule_frames(fs: FileSystem, part_dir: str) -> list[Frame]:
    """The granule frames of `primary.bin` (block metadata), in file order."""
    r = _reader(fs, part_dir)
    try:
        prim = r.index.granules["primary"]
        return sorted(Frame(int(e["offset"]), int(e["size"])) for e in prim)
    finally:
        r.close()


def granule_stream_frames(fs: FileSystem, part_dir: str, fname: str) -> list[Frame]:
    """The frames of a granule-mode stream (granule-mode data file or `<tag>.t`), in file order."""
    r = _reader(fs, part_dir)
    try:
        s = r.meta.granule_streams.index(fname)
        return sorted(Frame(int(e["offset"]), int(e["size"])) for e in r.index.entries[:, s])
    finally:
        r.close()


# -- composite damage -----------------------------------------------------------------------------
def truncate_blocks(fs: FileSystem, part_dir: str, fname: str, drop: int = 1, *, forge: bool = False) -> int:
    """Cut block-mode data file `fname` exactly at a block boundary, dropping its last `drop`
    blocks; with `forge`, metadata.json is rewritten to the new size. Returns the cut offset."""
    frames = block_frames(fs, part_dir, fname)
    if not 0 < drop < len(frames):
        raise ValueError(f"cannot drop {drop} of {len(frames)} blocks")
    cut = frames[-drop].offset
    truncate_file(fs, posixpath.join(part_dir, fname), cut)
    if forge:
        forge_sizes(fs, part_dir, [fname])
    return cut


def truncate_inside_block(
    fs: FileSystem, part_dir: str, fname: str, block: int | None = None, *, forge: bool = False
) -> int:
    """Cut block-mode data file `fname` in the middle of a block frame (default: the middle block
    of the file). Returns the cut offset."""
    frames = block_frames(fs, part_dir, fname)
    f = frames[len(frames) // 2 if block is None else block]
    if f.size < 2:
        raise ValueError(f"frame {f} is too small to cut inside")
    cut = f.offset + f.size // 2
    truncate_file(fs, posixpath.join(part_dir, fname), cut)
    if forge:
        forge_sizes(fs, part_dir, [fname])
    return cut


def stale_last_block(fs: FileSystem, part_dir: str, fname: str) -> Frame:
    """Replace the last block frame's bytes with stale ones (bytes from the start of the file, the
    same length), as BanyanDB's merge did when a source was short: size unchanged, content wrong.
    Returns the damaged frame."""
    frames = block_frames(fs, part_dir, fname)
    last = frames[-1]
    path = posixpath.join(part_dir, fname)
    head = fs.read_file(path)[: last.offset] or b"\x00"
    stale = (head * (last.size // len(head) + 1))[: last.size]
    if stale == fs.read_file(path)[last.offset : last.end]:
        stale = bytes(b ^ 0xFF for b in stale)
    corrupt_bytes(fs, path, last.offset, stale)
    return last
