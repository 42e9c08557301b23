"""Writes one part: blocks of rows -> data frames, tag chunks, the block index, sidecars.

The writer does not know where bytes go: a `Sink` is either memory (a memory part, later flushed
verbatim) or a directory of SeqWriters (a merge output streamed to disk). It never writes
`metadata.json`: publishing a part is the commit protocol's job (commit.py), done once, in core.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Protocol

import attrs
import numpy as np
import zstandard

from lamina import names
from lamina.format import compression
from lamina.format.block_index import BLOCK, ENTRY, GRANULE, encode_granule, encode_meta
from lamina.format.bloom import BloomFilter
from lamina.format.checksum import crc32c
from lamina.format.columns import encode_column, encode_frame, encode_frames_many
from lamina.format.compression import ZstdDict
from lamina.format.encoding import DecodeError, get_uvarint, put_uvarint
from lamina.format.part_meta import FORMAT_VERSION, PartMeta
from lamina.format.rows import Rows, object_array, row_sizes
from lamina.format.tag_filter import TagFilterBuilder
from lamina.format.tags import MODE_DICT, TagDict, encode_chunk, encode_tag_meta
from lamina.schema import BlockSchema, ColumnKind, FileLayout

INDEX_LEVEL = 1
DEFAULT_GRANULE_ROWS = 8192
DEFAULT_GRANULE_BLOCKS = 1024


class Sink(Protocol):
    def write(self, name: str, data: bytes | bytearray | memoryview) -> int:
        """Append to file `name` (created on first use); returns the offset written at."""

    def sizes(self) -> dict[str, int]: ...


class MemSink:
    """Files of a memory part."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}

    def write(self, name: str, data: bytes | bytearray | memoryview) -> int:
        buf = self.files.setdefault(name, bytearray())
        off = len(buf)
        buf += data
        return off

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.files.items()}


def pack_small_file(data: bytes, level: int = INDEX_LEVEL) -> bytes:
    """Whole-file framing for index/sidecar files: codec byte, uvarint raw length, payload."""
    codec, payload = compression.pack(data, level, None)
    return bytes([codec]) + put_uvarint(len(data)) + payload


def unpack_small_file(data: bytes | memoryview) -> bytes:
    view = memoryview(data)
    if not view:
        raise DecodeError("empty file")
    raw, pos = get_uvarint(view, 1)
    return compression.unpack(view[0], view[pos:], raw, None)


@attrs.frozen
class PartTags:
    """The tag layout of a part being written: per tag, DICT (with its dictionary) or PLAIN."""

    modes: dict[str, tuple[int, TagDict | None]]

    @property
    def names(self) -> list[str]:
        return sorted(self.modes)


class RawFrames:
    """Stored frames of consecutive blocks of one block-mode file, copied verbatim (merges): the
    payload bytes of each block and, per block, its uncompressed length, CRC32C and codec."""

    __slots__ = ("codec", "crc", "payloads", "raw")

    def __init__(self, payloads: list[bytes], raw: np.ndarray, crc: np.ndarray, codec: np.ndarray) -> None:
        if not len(payloads) == len(raw) == len(crc) == len(codec):
            raise ValueError("raw frames: payloads and entries disagree in length")
        self.payloads, self.raw, self.crc, self.codec = payloads, raw, crc, codec


class _Seg:
    """Consecutive blocks handed over in one call: block keys, rows per block, their rows
    (contiguous arrays), per-tag codes/values, and the block-mode frames when copied raw."""

    __slots__ = ("counts", "keys", "raw", "rows", "tags")

    def __init__(
        self,
        keys: list[bytes],
        counts: list[int],
        rows: Rows,
        tags: dict[str, np.ndarray],
        raw: list[RawFrames] | None,
    ) -> None:
        self.keys, self.counts, self.rows, self.tags, self.raw = keys, counts, rows, tags, raw


class _Run:
    """Blocks added one call each (`add_block`), kept in parallel lists: no object per block (the
    per-block path allocates as little as it can, which also keeps the GC out of flushes)."""

    __slots__ = ("counts", "keys", "rows", "tags")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.counts: list[int] = []
        self.rows: list[Rows] = []
        self.tags: list[dict[str, np.ndarray]] = []


class PartWriter:
    """Blocks are buffered per granule and encoded, compressed and written when the granule is
    full: frames of all the granule's blocks are encoded from whole-granule columns at once
    (`encode_frames_many`), and every index array is built with numpy, so the Python work per
    block is a few list operations. `add_rows` hands over a whole sorted flush in one call."""

    def __init__(
        self,
        sink: Sink,
        schema: BlockSchema,
        layout: FileLayout,
        tags: PartTags,
        *,
        dictionary: ZstdDict | None = None,
        granule_rows: int | None = None,
        threads: int = 2,
    ) -> None:
        self.sink, self.schema, self.layout, self.tags = sink, schema, layout, tags
        self.dictionary = dictionary if layout.dictionary_files else None
        self.granule_rows = granule_rows or DEFAULT_GRANULE_ROWS
        self.threads = threads
        self._kinds = {c.name: c.kind for c in schema.columns}
        self._tags_col = schema.tags_column
        files = [(f, cols) for f, cols in layout.files]
        self.block_files = [(f, cols) for f, cols in files if f not in layout.granule_files]
        self.granule_files = [(f, cols) for f, cols in files if f in layout.granule_files]
        self.tag_names = tags.names
        self._tag_set = frozenset(self.tag_names)
        self._ts_col = schema.timestamp
        self.granule_streams = [f for f, _ in self.granule_files] + [
            names.tag_data_file(t) for t in self.tag_names
        ]
        if len(set(self.granule_streams)) != len(self.granule_streams):
            raise ValueError(f"two tags map to the same file name: {sorted(self.tag_names)}")
        # current granule: pieces in order, a _Run of single blocks or a slice of a segment
        # (segment, first block, end block, first row, end row)
        self._pend: list[_Run | tuple[_Seg, int, int, int, int]] = []
        self._gblocks = 0
        self._grows = 0
        # whole part
        self._first_keys: list[bytes] = []
        self._last_keys: list[bytes] = []
        self._granules: list[np.void] = []
        self._gentries: list[np.ndarray] = []
        self.rows = 0
        self.blocks = 0
        self.uncompressed = 0
        self.min_ts = np.iinfo(np.int64).max
        self.max_ts = np.iinfo(np.int64).min
        self._last_key: bytes | None = None
        self._all_keys: list[bytes] = []
        self._ranges: dict[str, list[int]] = {}
        # per-block tag summaries, built from the tag values of every block written (encoded
        # or raw-copied alike: tag values always travel through here)
        self._tag_filters = (
            TagFilterBuilder(self.tag_names, layout.filter_columns) if layout.tag_filters else None
        )

    # -- adding blocks -----------------------------------------------------------------------
    def _check_order(self, keys: list[bytes]) -> None:
        last = self._last_key
        all_keys = self._all_keys
        for key in keys:
            if last is not None and key < last:
                raise ValueError(f"block key {key!r} after {last!r}: blocks must be sorted")
            if key != last:
                all_keys.append(key)
            last = key
        self._last_key = last

    def add_block(self, key: bytes, rows: Rows, tag_data: dict[str, np.ndarray] | None = None) -> None:
        """Add one block (rows share `key`, already in sort order).

        `tag_data` may carry, per tag, precomputed codes (DICT tags, in this part's dictionary)
        or values (PLAIN tags); tags not in it are taken from `rows`.
        """
        # the per-block path (one call per block): only what one block needs
        n = len(rows[self._ts_col])
        if n == 0:
            raise ValueError("empty block")
        last = self._last_key
        if last is not None and key < last:
            raise ValueError(f"block key {key!r} after {last!r}: blocks must be sorted")
        if key != last:
            self._all_keys.append(key)
            self._last_key = key
        if tag_data is None or not tag_data.keys() >= self._tag_set:
            tag_data = self._seg_tags(rows, n, tag_data)
        pend = self._pend
        run = pend[-1] if pend else None
        if type(run) is not _Run:
            run = _Run()
            pend.append(run)
        run.keys.append(key)
        run.counts.append(n)
        run.rows.append(rows)
        run.tags.append(tag_data)
        self.rows += n
        self.blocks += 1
        self._grows += n
        self._gblocks += 1
        if self._grows >= self.granule_rows or self._gblocks >= DEFAULT_GRANULE_BLOCKS:
            self._flush_granule()

    def add_rows(
        self,
        keys: list[bytes],
        rows: Rows,
        bounds: list[tuple[int, int]],
        tag_data: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Add sorted rows cut into blocks at `bounds` (as `block_bounds` returns: consecutive
        [a, b) ranges covering every row); `keys` is the block key of each row. Equivalent to
        `add_block(keys[a], take(rows, slice(a, b)), ...)` for each range, and writes the same
        bytes, without any per-block slicing."""
        n = len(rows[self.schema.timestamp])
        if not bounds:
            if n:
                raise ValueError("bounds cover no rows")
            return
        counts = [b - a for a, b in bounds]
        if bounds[0][0] != 0 or bounds[-1][1] != n or any(c <= 0 for c in counts):
            raise ValueError("bounds must be non-empty consecutive ranges covering every row")
        if any(b != a2 for (_, b), (a2, _) in itertools.pairwise(bounds)):
            raise ValueError("bounds must be consecutive ranges")
        self._add_seg([keys[a] for a, _ in bounds], counts, rows, tag_data, None)

    def add_raw_block(
        self,
        key: bytes,
        rows: Rows,
        raw_frames: list[tuple[int, bytes, int, int]],
        tag_data: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Add a block whose per-block frames are copied verbatim (codec, payload, raw, crc).

        `rows` only needs the timestamp column and the granule-mode columns.
        """
        if len(raw_frames) != len(self.block_files):
            raise ValueError(f"{len(raw_frames)} raw frames for {len(self.block_files)} block files")
        raw = [
            RawFrames(
                [payload],
                np.array([rlen], dtype=np.uint32),
                np.array([crc], dtype=np.uint32),
                np.array([codec], dtype=np.uint8),
            )
            for codec, payload, rlen, crc in raw_frames
        ]
        self._add_seg([key], [len(rows[self.schema.timestamp])], rows, tag_data, raw)

    def add_raw_blocks(
        self,
        keys: list[bytes],
        counts: list[int],
        rows: Rows,
        raw: list[RawFrames],
        tag_data: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Add consecutive blocks whose block-mode frames are copied verbatim: `raw` holds, per
        block-mode file, their stored frames (checksums already verified by the caller). `rows`
        (`counts[k]` rows for block k) needs only the timestamp and granule-mode columns."""
        if len(raw) != len(self.block_files) or any(len(r.payloads) != len(keys) for r in raw):
            raise ValueError("raw frames do not match the blocks or the block files")
        self._add_seg(keys, counts, rows, tag_data, raw)

    def _seg_tags(self, rows: Rows, n: int, tag_data: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for t in self.tag_names:
            if tag_data is not None and t in tag_data:
                out[t] = tag_data[t]
                continue
            mode, tdict = self.tags.modes[t]
            # raw copies carry no tag columns at all; a part may lack a tag others have
            col = rows.get(self._tags_col, {}).get(t) if self._tags_col else None
            if col is None:
                out[t] = np.zeros(n, np.int64) if mode == MODE_DICT else np.full(n, None, object)
            elif mode == MODE_DICT:
                assert tdict is not None
                out[t] = tdict.codes(col)
            else:
                out[t] = col
        return out

    def _add_seg(
        self,
        keys: list[bytes],
        counts: list[int],
        rows: Rows,
        tag_data: dict[str, np.ndarray] | None,
        raw: list[RawFrames] | None,
    ) -> None:
        n = len(rows[self.schema.timestamp])
        if len(keys) != len(counts) or sum(counts) != n:
            raise ValueError("block keys, row counts and rows disagree")
        if n == 0 or (len(counts) > 1 and min(counts) <= 0):
            raise ValueError("empty block")
        self._check_order(keys)
        seg = _Seg(keys, counts, rows, self._seg_tags(rows, n, tag_data), raw)
        self.rows += n
        self.blocks += len(counts)
        # cut into granules exactly where adding the blocks one by one would
        gr, gb, limit_r, limit_b = self._grows, self._gblocks, self.granule_rows, DEFAULT_GRANULE_BLOCKS
        blk = row = a_blk = a_row = 0
        for c in counts:
            gr += c
            gb += 1
            blk += 1
            row += c
            if gr >= limit_r or gb >= limit_b:
                self._pend.append((seg, a_blk, blk, a_row, row))
                self._grows, self._gblocks = gr, gb
                self._flush_granule()
                gr = gb = 0
                a_blk, a_row = blk, row
        if blk > a_blk:
            self._pend.append((seg, a_blk, blk, a_row, row))
        self._grows, self._gblocks = gr, gb

    # -- granules ----------------------------------------------------------------------------
    def _write_frame(self, name: str, codec: int, payload: bytes, raw: int, crc: int, entry: np.void) -> None:
        entry["offset"] = self.sink.write(name, payload)
        entry["size"], entry["raw"], entry["crc"], entry["codec"] = len(payload), raw, crc, codec
        self.uncompressed += raw

    def _pack_write(
        self, name: str, raw: bytes, entry: np.void, level: int, zd: ZstdDict | None = None
    ) -> None:
        codec, payload = compression.pack(raw, level, zd)
        self._write_frame(name, codec, payload, len(raw), crc32c(payload), entry)

    def _flush_granule(self) -> None:
        pend = self._pend
        if not pend:
            return
        nb = self._gblocks
        keys: list[bytes] = []
        counts_l: list[int] = []
        for p in pend:
            if type(p) is _Run:
                keys += p.keys
                counts_l += p.counts
            else:
                seg, a, b, _, _ = p
                keys += seg.keys[a:b]
                counts_l += seg.counts[a:b]
        counts = np.array(counts_l, dtype=np.int64)
        gathered: dict[str, np.ndarray] = {}

        def cat(pieces: list[Any], c: str, tags: bool = False) -> np.ndarray:
            """Column `c` (or tag `c`) of the rows of `pieces`, as one array."""
            parts: list[np.ndarray] = []
            for p in pieces:
                if type(p) is _Run:
                    parts += [t[c] for t in p.tags] if tags else [r[c] for r in p.rows]
                else:
                    seg, _, _, ra, rb = p
                    parts.append((seg.tags if tags else seg.rows)[c][ra:rb])
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        def gather(c: str) -> np.ndarray:
            arr = gathered.get(c)
            if arr is None:
                arr = gathered[c] = cat(pend, c)
            return arr

        ts = np.asarray(gather(self.schema.timestamp), dtype=np.int64)
        for c in self.schema.range_columns:
            vals = gather(c)
            lo, hi = int(vals.min()), int(vals.max())
            r = self._ranges.get(c)
            self._ranges[c] = [lo, hi] if r is None else [min(r[0], lo), max(r[1], hi)]
        starts = np.zeros(nb, dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        blocks = np.zeros(nb, dtype=BLOCK)
        blocks["rows"] = counts
        blocks["min_ts"] = np.minimum.reduceat(ts, starts)
        blocks["max_ts"] = np.maximum.reduceat(ts, starts)
        entries = np.zeros((nb, len(self.block_files)), dtype=ENTRY)
        enc = [p for p in pend if type(p) is _Run or p[0].raw is None]
        all_enc = len(enc) == len(pend)
        level = self.schema.compression_level
        for j, (fname, cols) in enumerate(self.block_files):
            col = entries[:, j]
            if enc:
                if all_enc:
                    ecounts, ecols = counts, [gather(c) for c in cols]
                else:
                    ecounts = np.array(
                        [c for p in enc for c in (p.counts if type(p) is _Run else p[0].counts[p[1] : p[2]])],
                        dtype=np.int64,
                    )
                    ecols = [cat(enc, c) for c in cols]
                frames = encode_frames_many([self._kinds[c] for c in cols], ecols, ecounts)
                zd = self.dictionary if fname in self.layout.dictionary_files else None
                packed = compression.compress_many(frames, level, zd, self.threads)
                e_pay = [p for _, p in packed]
                e_codec = np.fromiter((c for c, _ in packed), dtype=np.uint8, count=len(packed))
                e_raw = np.fromiter(map(len, frames), dtype=np.uint32, count=len(frames))
                e_crc = np.fromiter(map(crc32c, e_pay), dtype=np.uint32, count=len(e_pay))
            if all_enc:
                payloads = e_pay
                col["raw"], col["crc"], col["codec"] = e_raw, e_crc, e_codec
            else:
                payloads = []
                pos = k = 0
                for p in pend:
                    if type(p) is _Run or p[0].raw is None:
                        m = len(p.keys) if type(p) is _Run else p[2] - p[1]
                        payloads += e_pay[k : k + m]
                        src = (e_raw[k : k + m], e_crc[k : k + m], e_codec[k : k + m])
                        k += m
                    else:
                        seg, a, b, _, _ = p
                        m = b - a
                        rf = seg.raw[j]  # type: ignore[index]
                        payloads += rf.payloads[a:b]
                        src = (rf.raw[a:b], rf.crc[a:b], rf.codec[a:b])
                    col["raw"][pos : pos + m], col["crc"][pos : pos + m], col["codec"][pos : pos + m] = src
                    pos += m
            sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=nb)
            base = self.sink.write(fname, b"".join(payloads))
            offs = np.zeros(nb, dtype=np.int64)
            np.cumsum(sizes[:-1], out=offs[1:])
            col["offset"] = offs + base
            col["size"] = sizes
            self.uncompressed += int(col["raw"].sum(dtype=np.int64))
        gentries = np.zeros(len(self.granule_streams), dtype=ENTRY)
        for j, (fname, cols) in enumerate(self.granule_files):
            frame = encode_frame([encode_column(self._kinds[c], gather(c)) for c in cols])
            self._pack_write(fname, frame, gentries[j], level)
        base = len(self.granule_files)
        filter_cols = []
        for k, t in enumerate(self.tag_names):
            mode, tdict = self.tags.modes[t]
            tcol = cat(pend, t, tags=True)
            chunk = encode_chunk(mode, tcol, len(tdict) if tdict is not None else 0)
            self._pack_write(names.tag_data_file(t), chunk, gentries[base + k], level)
            filter_cols.append((mode, tdict, tcol))
        if self._tag_filters is not None:
            self._tag_filters.add_granule(
                counts, filter_cols, [gather(c) for c in self.layout.filter_columns]
            )
        g = np.zeros((), dtype=GRANULE)
        g["blocks"], g["rows"] = nb, self._grows
        g["min_ts"], g["max_ts"] = blocks["min_ts"].min(), blocks["max_ts"].max()
        self.min_ts = min(self.min_ts, int(g["min_ts"]))
        self.max_ts = max(self.max_ts, int(g["max_ts"]))
        self._pack_write(names.PRIMARY, encode_granule(keys, blocks, entries), g["primary"], INDEX_LEVEL)
        self._granules.append(g)
        self._gentries.append(gentries)
        self._first_keys.append(keys[0])
        self._last_keys.append(keys[-1])
        self._pend = []
        self._grows = 0
        self._gblocks = 0

    # -- finishing ---------------------------------------------------------------------------
    def finish(
        self,
        *,
        part_id: int,
        engine: str,
        dataset: str,
        lineage: list[int] | None = None,
        level: int = 0,
        key_filter_keys: list[bytes] | None = None,
    ) -> PartMeta:
        """Write the index and sidecars; return the part's metadata (not yet published)."""
        self._flush_granule()
        if self.rows == 0:
            raise ValueError("a part needs at least one row")
        sizes_before = self.sink.sizes()
        checksums: dict[str, int] = {}

        def small(name: str, raw: bytes) -> None:
            data = pack_small_file(raw)
            self.sink.write(name, data)
            checksums[name] = crc32c(data)

        granules = np.array(self._granules, dtype=GRANULE)
        gentries = np.array(self._gentries, dtype=ENTRY).reshape(len(granules), len(self.granule_streams))
        small(
            names.META_INDEX,
            encode_meta(self._first_keys, self._last_keys, granules, gentries, len(self.block_files)),
        )
        tag_types: dict[str, str] = {}
        for t in self.tag_names:
            mode, tdict = self.tags.modes[t]
            small(names.tag_meta_file(t), encode_tag_meta(mode, tdict))
            tag_types[t] = tdict.type_name() if tdict is not None else "mixed"
        if self.tag_names:
            small(self.layout.tag_types, json.dumps(tag_types, sort_keys=True).encode())
        if self.layout.key_filter:
            keys = key_filter_keys if key_filter_keys is not None else self._all_keys
            small(self.layout.key_filter, BloomFilter.build(keys).to_bytes())
        if self._tag_filters is not None:
            small(names.TAG_FILTERS, self._tag_filters.to_bytes())
        if self.dictionary is not None:
            small(names.DICTIONARY, self.dictionary.data)
        for fname, _ in self.layout.files:
            if fname not in sizes_before:
                self.sink.write(fname, b"")  # every declared data file exists, even if empty
        return PartMeta(
            format_version=FORMAT_VERSION,
            part_id=part_id,
            engine=engine,
            dataset=dataset,
            rows=self.rows,
            blocks=self.blocks,
            granules=len(granules),
            min_ts=int(self.min_ts),
            max_ts=int(self.max_ts),
            min_key=self._first_keys[0].hex(),
            max_key=self._last_keys[-1].hex(),
            uncompressed_bytes=self.uncompressed,
            files=self.sink.sizes(),
            checksums=checksums,
            layout={f: list(cols) for f, cols in self.layout.files},
            block_streams=[f for f, _ in self.block_files],
            granule_streams=self.granule_streams,
            tags=tag_types,
            lineage=list(lineage or []),
            level=level,
            dictionary_id=self.dictionary.dict_id if self.dictionary is not None else 0,
            created_ns=time.time_ns(),
            column_ranges=dict(self._ranges),
        )


def tags_for_rows(schema: BlockSchema, rows: Rows) -> tuple[PartTags, dict[str, np.ndarray]]:
    """Choose each tag's mode for a flush and code the whole column once (not per block)."""
    from lamina.format.tags import MAX_DICT, MODE_PLAIN

    col = schema.tags_column
    modes: dict[str, tuple[int, TagDict | None]] = {}
    data: dict[str, np.ndarray] = {}
    if col is None:
        return PartTags(modes), data
    for t, values in rows[col].items():
        tdict = TagDict()
        codes = tdict.codes(values)
        if len(tdict) <= MAX_DICT:
            modes[t], data[t] = (MODE_DICT, tdict), codes
        else:
            modes[t], data[t] = (MODE_PLAIN, None), values
    return PartTags(modes), data


def block_bounds(schema: BlockSchema, keys: list[bytes], sizes: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted rows into blocks: a new block at every key change, and within one key when the
    block would exceed `block_max_bytes` or `block_max_rows`."""
    n = len(keys)
    if n == 0:
        return []
    ka = object_array(keys)
    changes = np.concatenate(([0], np.flatnonzero(ka[1:] != ka[:-1]) + 1, [n]))
    max_b, max_r = schema.block_max_bytes, schema.block_max_rows or n
    cum = np.concatenate(([0], np.cumsum(sizes)))
    fits = ((cum[changes[1:]] - cum[changes[:-1]]) <= max_b) & (np.diff(changes) <= max_r)
    ch = changes.tolist()
    if fits.all():
        return list(itertools.pairwise(ch))
    out = []
    for (a, b), ok in zip(itertools.pairwise(ch), fits.tolist(), strict=True):
        if ok:
            out.append((a, b))
            continue
        s = a
        while s < b:
            # largest e with cum[e]-cum[s] <= max_b, at least one row, at most max_r rows
            e = int(np.searchsorted(cum, cum[s] + max_b, side="right")) - 1
            e = max(s + 1, min(e, b, s + max_r))
            out.append((s, e))
            s = e
    return out


def key_of(schema: BlockSchema, value: object) -> bytes:
    """Block key bytes: BYTES as is; INT64 big-endian with the sign bit flipped (sorts as ints)."""
    if type(value) is bytes:  # a BYTES key column (an INT64 one never holds bytes): per-row fast path
        return value
    if schema.column(schema.block_key).kind is ColumnKind.INT64:
        return ((int(value) + (1 << 63)) & ((1 << 64) - 1)).to_bytes(8, "big")  # type: ignore[call-overload]
    return value  # type: ignore[return-value]


MIN_TRAINING_BLOCKS = 200
# Training time grows with the samples: ~1 s on 3,000 blocks, ~0.15 s on 300 for ~1 % larger
# output (shared/reference/block-compression.md). It runs inside the table's first flush, so it
# is kept short enough that this flush is not much slower than the others.
MAX_TRAINING_BLOCKS = 300
DICTIONARY_BYTES = 64 * 1024
# fastCover parameters (segment size k, d-mer size d). Left at 0, zstd searches for them, which is
# ~4x slower; on trace payloads its search settles on exactly these, giving the same dictionary.
_TRAIN_K, _TRAIN_D = 1024, 8


def train_for_layout(
    schema: BlockSchema, layout: FileLayout, rows: Rows, keys: list[bytes]
) -> ZstdDict | None:
    """Train the table's zstd dictionary on real frames of the dictionary-compressed files.

    Trained once per table and reused by every later flush and merge, so frames of different parts
    share it and merges can copy them raw. None (try again next flush) with too few samples.
    """
    bounds = block_bounds(schema, keys, row_sizes(schema, rows))
    if len(bounds) < MIN_TRAINING_BLOCKS:
        return None
    if len(bounds) > MAX_TRAINING_BLOCKS:  # evenly spread over the flush
        bounds = [bounds[len(bounds) * i // MAX_TRAINING_BLOCKS] for i in range(MAX_TRAINING_BLOCKS)]
    kinds = {c.name: c.kind for c in schema.columns}
    starts = np.array([a for a, _ in bounds], dtype=np.int64)
    counts = np.array([b - a for a, b in bounds], dtype=np.int64)
    idx = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
    samples = [
        frame
        for f, cols in layout.files
        if f in layout.dictionary_files
        for frame in encode_frames_many([kinds[c] for c in cols], [rows[c][idx] for c in cols], counts)
    ]
    return _train_fast(samples) or compression.train_dictionary(samples, DICTIONARY_BYTES)


def _train_fast(samples: list[bytes]) -> ZstdDict | None:
    """`compression.train_dictionary` with fixed fastCover parameters (no parameter search);
    None when zstd cannot train on these samples."""
    if (
        len(samples) < compression.MIN_TRAINING_SAMPLES
        or sum(map(len, samples)) < compression.MIN_TRAINING_BYTES
    ):
        return None
    try:
        trained = zstandard.train_dictionary(DICTIONARY_BYTES, samples, k=_TRAIN_K, d=_TRAIN_D)
        return ZstdDict(trained.as_bytes())
    except (zstandard.ZstdError, ValueError, MemoryError):
        return None
