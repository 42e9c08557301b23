"""Reads one part, trusting nothing.

Opening validates the commit record and compares every file's size with it (one stat each), then
verifies the small files' checksums; every frame read later is checksummed before it is decoded.
Any failure becomes a `CorruptPartError` naming part, file, offset and reason, raised where it was
found; what to do about it (quarantine) is decided in one place elsewhere.
"""

from __future__ import annotations

import bisect
import errno
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from lamina import names
from lamina.errors import CorruptionReason as R
from lamina.errors import CorruptPartError, EnvironmentIOError, LaminaError, ShortReadError
from lamina.format import compression
from lamina.format.block_index import ENTRY, Granule, MetaIndex, decode_granule, decode_meta
from lamina.format.bloom import BloomFilter
from lamina.format.checksum import crc32c
from lamina.format.columns import decode_column, split_frame
from lamina.format.compression import ZstdDict
from lamina.format.encoding import DecodeError
from lamina.format.part_meta import SUPPORTED_VERSIONS, PartMeta
from lamina.format.part_writer import unpack_small_file
from lamina.format.records import RecordError, load_record
from lamina.format.rows import Rows
from lamina.format.tag_filter import TagFilters
from lamina.format.tags import MODE_DICT, TagDict, decode_chunk, decode_tag_meta
from lamina.io.descriptors import DescriptorCache
from lamina.io.fs import DIR, FILE, FileSystem, NotRegularFileError, proves_damage
from lamina.schema import BlockSchema, ColumnKind

# Decoded granule chunks kept per part, by decoded size (LRU). A merged part of 300k spans holds
# ~37 granules x 9 granule streams of timestamps, durations and tag codes: ~8 MB decoded, so the
# whole working set of lookups and scans stays decoded instead of thrashing a fixed entry count.
CHUNK_CACHE_BYTES = 32 * 1024 * 1024
# Largest single read when copying a granule's stored frames (merges).
_MAX_READ = 16 * 1024 * 1024
# Estimated bytes per element of an object array (pointer + a small str/int/bytes object).
_OBJECT_ITEM_BYTES = 64


def _decoded_size(value: Any) -> int:
    """Approximate memory held by a decoded chunk (an array or a dict of arrays)."""
    if isinstance(value, dict):
        return sum(_decoded_size(v) for v in value.values())
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return value.size * _OBJECT_ITEM_BYTES
        return value.nbytes
    return 64


class Source(Protocol):
    def read(self, name: str, offset: int, size: int) -> bytes: ...
    def read_all(self, name: str) -> bytes: ...
    def listing(self) -> dict[str, int]:
        """File name -> size for every file present."""

    def close(self) -> None: ...


class MemSource:
    def __init__(self, files: dict[str, bytes | bytearray]) -> None:
        self.files = files

    def read(self, name: str, offset: int, size: int) -> bytes:
        buf = self.files[name]
        data = bytes(buf[offset : offset + size])
        if len(data) != size:
            raise ShortReadError(name, offset, size, len(data))
        return data

    def read_all(self, name: str) -> bytes:
        return bytes(self.files[name])

    def listing(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.files.items()}

    def close(self) -> None:
        pass


class DirSource:
    """A part directory, read through the store's descriptor cache (io/descriptors.py): a part
    holds no descriptor of its own, so the number of parts is not bounded by the fd limit."""

    def __init__(self, fs: FileSystem, path: str, descriptors: DescriptorCache | None = None) -> None:
        self.fs, self.path = fs, path
        self._private = descriptors is None
        self.descriptors = DescriptorCache(fs, 8) if descriptors is None else descriptors
        self._paths: dict[str, str] = {}

    def read(self, name: str, offset: int, size: int) -> bytes:
        path = self._paths.get(name)
        if path is None:
            path = self._paths[name] = posixpath.join(self.path, name)
        return self.descriptors.pread_exact(path, offset, size)

    def read_all(self, name: str) -> bytes:
        return self.fs.read_file(posixpath.join(self.path, name))

    def listing(self) -> dict[str, int]:
        """File name -> size. A symlink or special file among them raises NotRegularFileError:
        it is never opened, and its presence alone makes the part something Lamina did not write."""
        out = {}
        for n in self.fs.listdir(self.path):
            p = posixpath.join(self.path, n)
            kind = self.fs.kind(p)
            if kind != FILE:
                if kind == DIR:
                    raise IsADirectoryError(errno.EISDIR, "a directory inside a part", p)
                raise NotRegularFileError(p, kind or "vanished entry")
            out[n] = self.fs.file_size(p)
        return out

    def close(self) -> None:
        if self._private:
            self.descriptors.close()
        else:
            self.descriptors.forget(self.path)


def os_error(part: str, fname: str, offset: int, e: OSError, doing: str, engine: str = "") -> LaminaError:
    """What an OS error met while reading a part means: damage (`CorruptPartError`, the part will
    be quarantined) only when it proves the part is not what was written; otherwise an
    `EnvironmentIOError` naming the part, which fails the operation and leaves the part live."""
    if isinstance(e, LaminaError):
        return e
    if not proves_damage(e):
        where = f"{fname} of part {part}" if fname else f"part {part}"
        return EnvironmentIOError(f"{doing} {where}", e)
    if isinstance(e, NotRegularFileError):
        reason, detail = R.NOT_REGULAR, f"{posixpath.basename(e.filename or fname)} is a {e.kind}, not a file"
    elif isinstance(e, FileNotFoundError):
        reason, detail = R.MISSING_FILE, f"vanished while {doing}"
    else:
        reason, detail = R.IO_ERROR, f"{type(e).__name__}: {e}"
    found = posixpath.basename(e.filename) if e.filename and not fname else fname
    return CorruptPartError(part, found, offset, reason, detail, engine=engine)


def parse_metadata(data: bytes, part: str) -> PartMeta:
    try:
        return load_record(data, PartMeta, SUPPORTED_VERSIONS)
    except RecordError as e:
        reason = R.FORMAT_VERSION if e.version else R.METADATA
        raise CorruptPartError(part, names.METADATA, -1, reason, str(e)) from None


_DTYPE = {ColumnKind.INT64: np.int64, ColumnKind.FLOAT64: np.float64}


class PartReader:
    """An open, validated part. Thread-safe for reads."""

    def __init__(self, name: str, meta: PartMeta, source: Source, *, engine: str = "") -> None:
        self.name, self.meta, self.source, self.engine = name, meta, source, engine
        self._lock = threading.Lock()
        self._chunks: OrderedDict[tuple[int, int], tuple[Any, int]] = OrderedDict()
        self._chunk_bytes = 0
        self.chunk_cache_bytes = CHUNK_CACHE_BYTES
        self._blocks: _BlockTable | None = None
        self._tagdicts: dict[str, tuple[int, TagDict | None]] = {}
        self._tag_raw: dict[str, bytes] = {}  # verified stored .tm bytes, until decoded
        self._tag_streams: list[tuple[str, int]] | None = None
        self._lookups: dict[str, np.ndarray] = {}
        self._granule_starts: np.ndarray | None = None
        self._layouts: Any = None
        self._bloom: BloomFilter | None = None
        self.tag_filters: TagFilters | None = None
        self.dictionary: ZstdDict | None = None
        self.index: MetaIndex
        self._kinds: dict[str, ColumnKind] = {}
        self._key_range = (bytes.fromhex(meta.min_key), bytes.fromhex(meta.max_key))

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        source: Source,
        name: str,
        *,
        meta: PartMeta | None = None,
        kinds: dict[str, ColumnKind],
        key_filter: str | None = None,
        engine: str = "",
    ) -> PartReader:
        """Validate and open. `kinds` maps column name -> kind (from the engine schema)."""
        try:
            return cls._open(source, name, meta, kinds, key_filter, engine)
        except CorruptPartError as e:
            source.close()
            raise e.with_engine(engine) from None
        except BaseException:
            source.close()
            raise

    @classmethod
    def _open(
        cls,
        source: Source,
        name: str,
        meta: PartMeta | None,
        kinds: dict[str, ColumnKind],
        key_filter: str | None,
        engine: str,
    ) -> PartReader:
        if meta is None:
            try:
                listing = source.listing()
            except (NotADirectoryError, FileNotFoundError) as e:
                raise CorruptPartError(
                    name, "", -1, R.MISSING_FILE, f"part is not a directory: {e}"
                ) from None
            except OSError as e:
                raise os_error(name, "", -1, e, "listing") from None
            if names.METADATA not in listing:
                raise CorruptPartError(name, names.METADATA, -1, R.MISSING_FILE, "no commit record")
            try:
                raw = source.read_all(names.METADATA)
            except OSError as e:
                raise os_error(name, names.METADATA, -1, e, "reading") from None
            meta = parse_metadata(raw, name)
            if names.parse_part_name(name) is not None and meta.part_id != int(name, 16):
                raise CorruptPartError(
                    name,
                    names.METADATA,
                    -1,
                    R.METADATA,
                    "part_id does not match directory",
                    expected=int(name, 16),
                    actual=meta.part_id,
                )
            check_listing(name, meta, listing)
        self = cls(name, meta, source, engine=engine)
        for col_list in meta.layout.values():
            for c in col_list:
                if c not in kinds:
                    raise CorruptPartError(name, names.METADATA, -1, R.METADATA, f"unknown column {c!r}")
        self._kinds = kinds
        raw_meta = self._small(names.META_INDEX)
        self.index = self._decode(
            names.META_INDEX,
            -1,
            lambda: decode_meta(raw_meta, len(meta.block_streams), len(meta.granule_streams)),
        )
        if (
            int(self.index.granules["blocks"].sum()) != meta.blocks
            or int(self.index.granules["rows"].sum()) != meta.rows
        ):
            raise CorruptPartError(name, names.META_INDEX, -1, R.METADATA, "block/row counts disagree")
        for t in meta.tags:
            # checksum verified now; decompressed and decoded on first use (`tag_mode`)
            self._tag_raw[t] = self._small_stored(names.tag_meta_file(t))
        if key_filter and key_filter in meta.files:
            raw = self._small(key_filter)
            self._bloom = self._decode(key_filter, -1, lambda: BloomFilter.from_bytes(raw))
        if names.TAG_FILTERS in meta.files:
            raw_tf = self._small(names.TAG_FILTERS)
            self.tag_filters = self._decode(
                names.TAG_FILTERS, -1, lambda: TagFilters.from_bytes(raw_tf, sorted(meta.tags), meta.blocks)
            )
        if meta.dictionary_id:
            self.dictionary = ZstdDict(self._small(names.DICTIONARY))
            if self.dictionary.dict_id != meta.dictionary_id:
                raise CorruptPartError(name, names.DICTIONARY, -1, R.CHECKSUM, "dictionary id mismatch")
        # Every other checksummed small file (tag.type, sidecars the core does not interpret):
        # a file metadata.json vouches for is verified, whether or not this reader uses it.
        checked = {
            names.META_INDEX,
            names.DICTIONARY,
            names.TAG_FILTERS,
            key_filter,
            *map(names.tag_meta_file, meta.tags),
        }
        for fname in sorted(set(meta.checksums) - checked):
            self._small(fname)
        return self

    def _small(self, fname: str) -> bytes:
        data = self._small_stored(fname)
        return self._decode(fname, -1, lambda: unpack_small_file(data))

    def _small_stored(self, fname: str) -> bytes:
        """A small file's stored bytes, whole-file checksum verified (not yet unpacked)."""
        data = self._read(fname, 0, self.meta.files.get(fname, 0)) if fname in self.meta.files else None
        if data is None:
            raise CorruptPartError(self.name, fname, -1, R.MISSING_FILE, "not listed in metadata.json")
        want = self.meta.checksums.get(fname)
        if want is None or crc32c(data) != want:
            raise CorruptPartError(
                self.name,
                fname,
                -1,
                R.CHECKSUM,
                "whole-file checksum mismatch",
                expected=want,
                actual=crc32c(data),
            )
        return data

    # -- low-level reads ---------------------------------------------------------------------
    def _read(self, fname: str, offset: int, size: int) -> bytes:
        try:
            return self.source.read(fname, offset, size)
        except ShortReadError as e:
            raise CorruptPartError(
                self.name,
                fname,
                offset,
                R.SHORT_READ,
                str(e),
                expected=e.wanted,
                actual=e.got,
                engine=self.engine,
            ) from None
        except FileNotFoundError:
            raise CorruptPartError(
                self.name, fname, -1, R.MISSING_FILE, "file vanished", engine=self.engine
            ) from None
        except OSError as e:
            raise os_error(self.name, fname, offset, e, "reading", self.engine) from None

    def _decode(self, fname: str, offset: int, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (DecodeError, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            raise CorruptPartError(
                self.name, fname, offset, R.DECODE, f"{type(e).__name__}: {e}", engine=self.engine
            ) from None

    def read_frame_raw(self, fname: str, entry: np.void) -> bytes:
        """Stored bytes of one frame, checksum verified (for raw copies and for decoding)."""
        off, size = int(entry["offset"]), int(entry["size"])
        if off + size > self.meta.files.get(fname, 0):
            raise CorruptPartError(
                self.name,
                fname,
                off,
                R.OFFSET_MISMATCH,
                f"frame of {size} bytes beyond end of file",
                expected=self.meta.files.get(fname, 0),
                actual=off + size,
                engine=self.engine,
            )
        data = self._read(fname, off, size)
        crc = crc32c(data)
        if crc != int(entry["crc"]):
            raise self._frame_checksum_error(fname, off, int(entry["crc"]), crc)
        return data

    def _frame_checksum_error(self, fname: str, offset: int, expected: int, actual: int) -> CorruptPartError:
        return CorruptPartError(
            self.name,
            fname,
            offset,
            R.CHECKSUM,
            "frame checksum mismatch",
            expected=f"{expected:#010x}",
            actual=f"{actual:#010x}",
            engine=self.engine,
        )

    def read_frame(self, fname: str, entry: np.void) -> bytes:
        data = self.read_frame_raw(fname, entry)
        zd = self.dictionary if int(entry["codec"]) == compression.CODEC_ZSTD_DICT else None
        return self._decode(
            fname,
            int(entry["offset"]),
            lambda: compression.unpack(int(entry["codec"]), data, int(entry["raw"]), zd),
        )

    # -- block table -------------------------------------------------------------------------
    @property
    def blocks(self) -> _BlockTable:
        """Every block record of the part, decoded once and kept (vectorised pruning)."""
        if self._blocks is None:
            with self._lock:
                if self._blocks is None:
                    self._blocks = self._load_blocks()
        return self._blocks

    def _load_blocks(self) -> _BlockTable:
        grans: list[Granule] = []
        for g in range(len(self.index.granules)):
            rec = self.index.granules[g]
            raw = self.read_frame(names.PRIMARY, rec["primary"])
            gran = self._decode(
                names.PRIMARY,
                int(rec["primary"]["offset"]),
                lambda raw=raw, rec=rec: decode_granule(raw, self.index.n_block_streams, int(rec["blocks"])),
            )
            if int(gran.blocks["rows"].sum()) != int(rec["rows"]):
                raise CorruptPartError(
                    self.name,
                    names.PRIMARY,
                    int(rec["primary"]["offset"]),
                    R.METADATA,
                    "granule row count disagrees with meta.bin",
                    engine=self.engine,
                )
            grans.append(gran)
        return _BlockTable(self, grans)

    def may_contain(self, key: bytes) -> bool:
        """False when `key` is certainly absent: outside [min_key, max_key] or not in the bloom."""
        if not self._key_range[0] <= key <= self._key_range[1]:
            return False
        return self._bloom is None or self._bloom.may_contain(key)

    # -- per-block tag summaries (tags.tff) ---------------------------------------------------
    def blocks_may_match(self, tag: str, values: list[Any]) -> np.ndarray:
        """Per block of the part: False when the block certainly holds none of `values` for
        `tag` (typed equality: 1, "1" and True differ). A part without the tag matches nowhere;
        a part written without tag filters answers True for every block."""
        n = self.meta.blocks
        if tag not in self.meta.tags:
            return np.zeros(n, dtype=bool)
        if self.tag_filters is None:
            return np.ones(n, dtype=bool)
        return self.tag_filters.may_match(tag, values)

    def column_blocks_may_match(self, column: str, values: list[Any]) -> np.ndarray:
        """Per block: False when the block certainly holds none of `values` in `column` (a
        layout `filter_columns` column); True everywhere when the part has no such filter."""
        got = None if self.tag_filters is None else self.tag_filters.column_may_match(column, values)
        return np.ones(self.meta.blocks, dtype=bool) if got is None else got

    def block_may_match(self, block: int, tag: str, value: Any) -> bool:
        """`blocks_may_match` for one block and one value."""
        return bool(self.blocks_may_match(tag, [value])[block])

    def blocks_int_range(self, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per block: (holds int values of `tag`, their min, their max); None when the part was
        written without tag filters (nothing known). A part without the tag holds no ints."""
        if tag not in self.meta.tags:
            n = self.meta.blocks
            return np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
        if self.tag_filters is None:
            return None
        return self.tag_filters.int_ranges(tag)

    def block_int_range(self, block: int, tag: str) -> tuple[int, int] | None:
        """(min, max) of the int values of `tag` in `block`; None when it holds none or the part
        has no tag filters."""
        r = self.blocks_int_range(tag)
        if r is None or not r[0][block]:
            return None
        return int(r[1][block]), int(r[2][block])

    # -- granule chunks ----------------------------------------------------------------------
    def _chunk(self, granule: int, stream: int) -> Any:
        """Decoded granule-mode stream chunk: a dict of columns (data files) or tag codes/values."""
        key = (granule, stream)
        with self._lock:
            hit = self._chunks.get(key)
            if hit is not None:
                self._chunks.move_to_end(key)
                return hit[0]
        fname = self.meta.granule_streams[stream]
        entry = self.index.entries[granule, stream]
        count = int(self.index.granules[granule]["rows"])
        raw = self.read_frame(fname, entry)
        off = int(entry["offset"])
        ndata = len(self.meta.granule_streams) - len(self.meta.tags)
        if stream < ndata:
            cols = self.meta.layout[fname]

            def dec() -> dict[str, np.ndarray]:
                parts = split_frame(raw, len(cols))
                return {c: decode_column(self._kinds[c], p, count) for c, p in zip(cols, parts, strict=True)}
        else:
            tag = self.tag_names[stream - ndata]
            mode, tdict = self.tag_mode(tag)

            def dec() -> np.ndarray:  # type: ignore[misc]
                return decode_chunk(mode, raw, count, len(tdict) if tdict is not None else 0)

        value = self._decode(fname, off, dec)
        size = _decoded_size(value)
        with self._lock:
            old = self._chunks.pop(key, None)
            if old is not None:  # another thread decoded it meanwhile
                self._chunk_bytes -= old[1]
            self._chunks[key] = (value, size)
            self._chunk_bytes += size
            # keep at least the chunk just decoded, whatever the budget
            while self._chunk_bytes > self.chunk_cache_bytes and len(self._chunks) > 1:
                _, (_, dropped) = self._chunks.popitem(last=False)
                self._chunk_bytes -= dropped
        return value

    @property
    def tag_names(self) -> list[str]:
        return sorted(self.meta.tags)

    def tag_mode(self, tag: str) -> tuple[int, TagDict | None]:
        """(mode, dictionary) of `tag`, decoding its `.tm` file on first use (KeyError for a tag
        the part does not have)."""
        hit = self._tagdicts.get(tag)
        if hit is not None:
            return hit
        if tag not in self.meta.tags:
            raise KeyError(tag)
        with self._lock:
            hit = self._tagdicts.get(tag)
            if hit is None:
                raw = self._tag_raw[tag]
                fname = names.tag_meta_file(tag)
                hit = self._decode(fname, -1, lambda: decode_tag_meta(unpack_small_file(raw)))
                self._tagdicts[tag] = hit
                del self._tag_raw[tag]
        return hit

    def tag_lookup(self, tag: str) -> np.ndarray:
        lk = self._lookups.get(tag)
        if lk is None:
            _, tdict = self.tag_mode(tag)
            assert tdict is not None
            lk = self._lookups[tag] = tdict.lookup()
        return lk

    def _value_lookup(self, tag: str) -> np.ndarray | None:
        """The code -> value array of a DICT tag; None for a PLAIN tag (its chunks hold values)."""
        lk = self._lookups.get(tag)
        if lk is None:
            mode, _ = self.tag_mode(tag)
            if mode != MODE_DICT:
                return None
            lk = self.tag_lookup(tag)
        return lk

    def _tag_stream_list(self) -> list[tuple[str, int]]:
        """(tag, granule stream index) in stream order."""
        ts = self._tag_streams
        if ts is None:
            ndata = len(self.meta.granule_streams) - len(self.meta.tags)
            ts = self._tag_streams = [(t, ndata + k) for k, t in enumerate(self.tag_names)]
        return ts

    def adopt_decoded(self, other: PartReader) -> bool:
        """Reuse what `other`, a reader of the very same part files, has already decoded: tag
        dictionaries (and their value lookups), the block table and the zstd dictionary.

        Meant for a flush: the memory part's reader decoded these from the bytes that were then
        written verbatim to disk, so the on-disk reader need not decode them again. Only state not
        decoded here yet is taken. Returns False (adopting nothing) unless both readers describe
        identical files: same sizes, same small-file checksums, same layout and streams.
        """
        a, b = self.meta, other.meta
        if (
            a.files != b.files
            or a.checksums != b.checksums
            or a.layout != b.layout
            or a.block_streams != b.block_streams
            or a.granule_streams != b.granule_streams
            or a.tags != b.tags
            or (a.rows, a.blocks, a.granules) != (b.rows, b.blocks, b.granules)
            or a.dictionary_id != b.dictionary_id
        ):
            return False
        with other._lock:
            tagdicts = dict(other._tagdicts)
            lookups = dict(other._lookups)
            blocks = other._blocks
        with self._lock:
            for t, v in tagdicts.items():
                if t not in self._tagdicts:
                    self._tagdicts[t] = v
                    self._tag_raw.pop(t, None)
            for t, lk in lookups.items():
                self._lookups.setdefault(t, lk)
            if self._blocks is None and blocks is not None:
                self._blocks = blocks
            od = other.dictionary
            if od is not None and self.dictionary is not None and od.dict_id == self.dictionary.dict_id:
                self.dictionary = od  # shares its digested per-thread zstd contexts
        return True

    # -- reading blocks ----------------------------------------------------------------------
    def _layout_lists(
        self,
    ) -> tuple[list[tuple[int, str, list[str]]], list[tuple[int, str, list[str]]], str | None]:
        """(block streams, granule data streams, tags column): per stream its index, file name
        and columns; computed once per reader."""
        ll = self._layouts
        if ll is None:
            m = self.meta
            ndata = len(m.granule_streams) - len(m.tags)
            ll = self._layouts = (
                [(j, f, list(m.layout[f])) for j, f in enumerate(m.block_streams)],
                [(s, f, list(m.layout[f])) for s, f in enumerate(m.granule_streams[:ndata])],
                next((c for c, k in self._kinds.items() if k is ColumnKind.TAGS), None),
            )
        return ll

    def read_block(
        self,
        i: int,
        columns: list[str] | None = None,
        tags: list[str] | None = None,
        *,
        tag_codes: bool = False,
    ) -> Rows:
        """Decode block `i`. `columns=None` = all; `tags=None` = all tags of this part.

        With `tag_codes`, DICT tags come back as codes into this part's dictionary (for merges).
        """
        bt = self.blocks
        g, lo, hi, n = int(bt.granule_of[i]), int(bt.row_lo[i]), int(bt.row_hi[i]), int(bt.rows[i])
        want = None if columns is None else set(columns)
        block_streams, granule_streams, tags_col = self._layout_lists()
        kinds = self._kinds
        out: Rows = {}
        for j, fname, cols in block_streams:
            if want is not None and want.isdisjoint(cols):
                continue
            entry = bt.entries[i, j]
            raw = self.read_frame(fname, entry)

            def dec(raw: bytes = raw, cols: list[str] = cols) -> dict[str, np.ndarray]:
                parts = split_frame(raw, len(cols))
                return {
                    c: decode_column(kinds[c], p, n)
                    for c, p in zip(cols, parts, strict=True)
                    if want is None or c in want
                }

            out.update(self._decode(fname, int(entry["offset"]), dec))
        for s, _, cols in granule_streams:
            if want is not None and want.isdisjoint(cols):
                continue
            chunk = self._chunk(g, s)
            for c in cols:
                if want is None or c in want:
                    out[c] = chunk[c][lo:hi]
        if tags_col is not None and (want is None or tags_col in want or tags):
            out[tags_col] = self._tags_slice(g, lo, hi, tags, tag_codes)
        return out

    def read_tags(
        self, i: int, tags: list[str] | None = None, *, codes: bool = False
    ) -> dict[str, np.ndarray]:
        bt = self.blocks
        return self._tags_slice(int(bt.granule_of[i]), int(bt.row_lo[i]), int(bt.row_hi[i]), tags, codes)

    def _tags_slice(
        self, g: int, lo: int, hi: int, tags: list[str] | None, codes: bool
    ) -> dict[str, np.ndarray]:
        out = {}
        for t, stream in self._tag_stream_list():
            if tags is not None and t not in tags:
                continue
            chunk = self._chunk(g, stream)[lo:hi]
            if not codes:
                lk = self._lookups.get(t)
                if lk is None:
                    lk = self._value_lookup(t)
                if lk is not None:
                    chunk = lk[chunk]
            out[t] = chunk
        return out

    # -- granule-level access (vectorised scans) ----------------------------------------------
    @property
    def n_granules(self) -> int:
        return len(self.index.granules)

    @property
    def granule_block_starts(self) -> np.ndarray:
        """Index of each granule's first block, plus the block count at the end (n_granules + 1)."""
        gs = self._granule_starts
        if gs is None:
            gs = np.zeros(len(self.index.granules) + 1, dtype=np.int64)
            np.cumsum(self.index.granules["blocks"], out=gs[1:])
            self._granule_starts = gs
        return gs

    def granule_blocks(self, g: int) -> range:
        """Block indices stored in granule `g`."""
        gs = self.granule_block_starts
        return range(int(gs[g]), int(gs[g + 1]))

    def granule_column(self, g: int, column: str) -> np.ndarray:
        """All values of a granule-mode column for the rows of granule `g`."""
        for s, fname in enumerate(
            self.meta.granule_streams[: len(self.meta.granule_streams) - len(self.meta.tags)]
        ):
            if column in self.meta.layout[fname]:
                return self._chunk(g, s)[column]
        raise KeyError(f"{column} is not stored per granule in part {self.name}")

    def granule_block_columns(self, g: int, columns: list[str]) -> dict[str, np.ndarray]:
        """Block-mode `columns` for all the rows of granule `g` (block after block, as
        `granule_column` gives granule-mode ones): one read per data file for the whole granule,
        every frame's checksum verified, each frame decoded. For scans that need a column of
        most blocks of a granule; per-block Python work is what makes `read_block` slow there."""
        bt = self.blocks
        blocks = self.granule_blocks(g)
        block_streams, _, _ = self._layout_lists()
        out: dict[str, np.ndarray] = {}
        for j, fname, cols in block_streams:
            want = [c for c in cols if c in columns]
            if not want:
                continue
            pieces: dict[str, list[np.ndarray]] = {c: [] for c in want}
            entries = bt.entries[blocks.start : blocks.stop, j]
            for k, raw in enumerate(self.read_block_frames(g, j)):
                got = self._decode_frame(fname, entries[k], raw, int(bt.rows[blocks.start + k]), cols, want)
                for c, v in got.items():
                    pieces[c].append(v)
            for c in want:
                empty = np.empty(0, dtype=_DTYPE.get(self._kinds[c], object))
                out[c] = np.concatenate(pieces[c]) if pieces[c] else empty
        missing = [c for c in columns if c not in out]
        if missing:
            raise KeyError(f"{missing} are not block-mode columns of part {self.name}")
        return out

    def _decode_frame(
        self, fname: str, e: np.void, raw: bytes, n: int, cols: list[str], want: list[str]
    ) -> dict[str, np.ndarray]:
        """Decompress and decode the `want` columns of one verified stored frame of `n` rows."""
        codec = int(e["codec"])
        zd = self.dictionary if codec == compression.CODEC_ZSTD_DICT else None

        def dec() -> dict[str, np.ndarray]:
            parts = split_frame(compression.unpack(codec, raw, int(e["raw"]), zd), len(cols))
            return {
                c: decode_column(self._kinds[c], p, n) for c, p in zip(cols, parts, strict=True) if c in want
            }

        return self._decode(fname, int(e["offset"]), dec)

    def granule_tag(
        self, g: int, tag: str, *, codes: bool = False, rows: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Values (or codes, for DICT tags) of `tag` for the rows of granule `g` (only `rows`, row
        indices within the granule, when given); None if the part has no such tag."""
        if tag not in self.meta.tags:
            return None
        ndata = len(self.meta.granule_streams) - len(self.meta.tags)
        chunk = self._chunk(g, ndata + self.tag_names.index(tag))
        if rows is not None:
            chunk = chunk[rows]
        mode, _ = self.tag_mode(tag)
        return self.tag_lookup(tag)[chunk] if mode == MODE_DICT and not codes else chunk

    def tag_codes_matching(self, tag: str, predicate: Callable[[Any], bool]) -> np.ndarray | None:
        """For a DICT tag: the codes whose value satisfies `predicate` (evaluated once per distinct
        value, not per row). None for a PLAIN tag (evaluate per row instead)."""
        mode, tdict = self.tag_mode(tag)
        if mode != MODE_DICT or tdict is None:
            return None
        return np.array([i + 1 for i, v in enumerate(tdict.values) if predicate(v)], dtype=np.int64)

    def granule_tag_mask(
        self, g: int, tag: str, predicate: Callable[[Any], bool], rows: np.ndarray
    ) -> np.ndarray:
        """Boolean mask over `rows` (row indices within granule `g`): True where `tag` is present
        and its value satisfies `predicate`. A part without the tag matches nothing.

        Every engine's tag filter needs this; the dictionary path evaluates the predicate once per
        distinct value and compares codes in numpy, the plain path once per row."""
        if tag not in self.meta.tags:
            return np.zeros(len(rows), dtype=bool)
        codes = self.tag_codes_matching(tag, predicate)
        if codes is not None:
            return np.isin(self.granule_tag(g, tag, codes=True, rows=rows), codes)
        values = self.granule_tag(g, tag, rows=rows)
        if values is None:  # pragma: no cover - the tag is in meta.tags
            raise KeyError(tag)
        return np.fromiter(
            (v is not None and bool(predicate(v)) for v in values), dtype=bool, count=len(values)
        )

    def read_block_frames(self, g: int, j: int) -> list[bytes]:
        """Stored frames of every block of granule `g` in block-mode file `j` (for raw copies):
        one read of the byte range they span, then each frame's CRC32C verified against its
        entry, from the bytes already read."""
        blocks = self.granule_blocks(g)
        fname = self.meta.block_streams[j]
        e = self.blocks.entries[blocks.start : blocks.stop, j]
        if not len(e):
            return []
        offs = e["offset"].astype(np.int64)
        sizes = e["size"].astype(np.int64)
        ends = offs + sizes
        fsize = self.meta.files.get(fname, 0)
        if int(ends.max()) > fsize:
            k = int(np.argmax(ends > fsize))
            raise CorruptPartError(
                self.name,
                fname,
                int(offs[k]),
                R.OFFSET_MISMATCH,
                f"frame of {int(sizes[k])} bytes beyond end of file",
                expected=fsize,
                actual=int(ends[k]),
                engine=self.engine,
            )
        pays: list[bytes] = []
        if len(e) > 1 and bool(np.any(offs[1:] < ends[:-1])):  # not laid out in block order
            pays = [self._read(fname, a, b - a) for a, b in zip(offs.tolist(), ends.tolist(), strict=True)]
        else:
            # one read per run of frames spanning at most _MAX_READ bytes (one frame may exceed it)
            o_l, e_l = offs.tolist(), ends.tolist()
            k = 0
            while k < len(o_l):
                m = k + 1
                while m < len(o_l) and e_l[m] - o_l[k] <= _MAX_READ:
                    m += 1
                buf = self._read(fname, o_l[k], e_l[m - 1] - o_l[k])
                base = o_l[k]
                pays += [buf[a - base : b - base] for a, b in zip(o_l[k:m], e_l[k:m], strict=True)]
                k = m
        crcs = np.fromiter(map(crc32c, pays), dtype=np.uint32, count=len(pays))
        bad = np.flatnonzero(crcs != e["crc"])
        if len(bad):
            k = int(bad[0])
            raise self._frame_checksum_error(fname, int(offs[k]), int(e["crc"][k]), int(crcs[k]))
        return pays

    def iter_raw_frames(self, i: int) -> list[tuple[int, bytes, int, int]]:
        """Per-block frames of block `i` as stored (codec, payload, raw, crc), checksums verified."""
        bt = self.blocks
        out = []
        for j, fname in enumerate(self.meta.block_streams):
            e = bt.entries[i, j]
            out.append((int(e["codec"]), self.read_frame_raw(fname, e), int(e["raw"]), int(e["crc"])))
        return out

    def verify_all(self, schema: BlockSchema | None = None) -> int:
        """Deep check: read, checksum and decode every frame of the part. Returns frames checked.

        With the engine's `schema`, also recompute every statistic queries prune on (block,
        granule and part time bounds and keys, column ranges, the key filter) and compare it
        with what the part records (format/statistics.py)."""
        n = 0
        for t in self.meta.tags:
            self.tag_mode(t)
        bt = self.blocks
        for i in range(len(bt.keys)):
            self.read_block(i)
            n += len(self.meta.block_streams)
        for g in range(len(self.index.granules)):
            for s in range(len(self.meta.granule_streams)):
                self._chunk(g, s)
                n += 1
        if self.tag_filters is not None:
            # the summaries must admit every value stored: a filter that wrongly rejects would
            # make queries silently skip rows
            for i in range(len(bt.keys)):
                for t, vals in self.read_tags(i).items():
                    problem = self.tag_filters.check_block(i, t, vals)
                    if problem is not None:
                        raise CorruptPartError(
                            self.name, names.TAG_FILTERS, -1, R.DECODE, problem, engine=self.engine
                        )
                cols = self.tag_filters.columns
                for c, vals in (self.read_block(i, cols, []) if cols else {}).items():
                    problem = self.tag_filters.check_block(i, c, vals, column=True)
                    if problem is not None:
                        raise CorruptPartError(
                            self.name, names.TAG_FILTERS, -1, R.DECODE, problem, engine=self.engine
                        )
            n += 1
        if schema is not None:
            from lamina.format.statistics import verify_statistics

            verify_statistics(self, schema)
        return n + len(self.index.granules)

    def close(self) -> None:
        self.source.close()


class _BlockTable:
    """All block records of a part as flat arrays: keys, rows, time bounds, frame entries."""

    def __init__(self, part: PartReader, grans: list[Granule]) -> None:
        self.keys: list[bytes] = [k for g in grans for k in g.keys]
        if any(self.keys[i] < self.keys[i - 1] for i in range(1, len(self.keys))):
            raise CorruptPartError(
                part.name, names.PRIMARY, -1, R.DECODE, "block keys out of order across granules"
            )
        if grans:
            recs = np.concatenate([g.blocks for g in grans])
            self.entries = np.concatenate([g.entries for g in grans])
        else:
            recs = np.zeros(0, dtype=[("rows", "<u4"), ("min_ts", "<i8"), ("max_ts", "<i8")])
            self.entries = np.zeros((0, len(part.meta.block_streams)), dtype=ENTRY)
        self.rows = recs["rows"].astype(np.int64)
        self.min_ts = recs["min_ts"]
        self.max_ts = recs["max_ts"]
        self.granule_of = (
            np.concatenate([np.full(len(g.keys), gi) for gi, g in enumerate(grans)])
            if grans
            else np.zeros(0, np.int64)
        )
        lo = np.zeros(len(self.keys), dtype=np.int64)
        start = 0
        for g in grans:
            n = len(g.keys)
            r = g.blocks["rows"].astype(np.int64)
            lo[start : start + n] = np.concatenate(([0], np.cumsum(r)[:-1]))
            start += n
        self.row_lo = lo
        self.row_hi = lo + self.rows

    def find(self, key: bytes) -> range:
        a = bisect.bisect_left(self.keys, key)
        b = bisect.bisect_right(self.keys, key, lo=a)
        return range(a, b)


def check_listing(name: str, meta: PartMeta, listing: dict[str, int]) -> None:
    """Sizes on disk must equal the commit record exactly; no file missing, none extra."""
    for fname, size in sorted(meta.files.items()):
        if fname not in listing:
            raise CorruptPartError(name, fname, -1, R.MISSING_FILE, "listed in metadata.json but absent")
        if listing[fname] != size:
            raise CorruptPartError(
                name,
                fname,
                -1,
                R.SIZE_MISMATCH,
                "file size differs from metadata.json",
                expected=size,
                actual=listing[fname],
            )
    for fname in sorted(listing):
        if fname != names.METADATA and fname not in meta.files:
            raise CorruptPartError(name, fname, -1, R.UNKNOWN_FILE, "file not listed in metadata.json")
