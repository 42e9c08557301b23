"""Writes one part: blocks of rows -> data frames, tag chunks, the block index, sidecars.

The writer does not know where bytes go: a `Sink` is either memory (a memory part, later flushed
verbatim) or a directory of SeqWriters (a merge output streamed to disk). It never writes
`metadata.json`: publishing a part is the commit protocol's job (commit.py), done once, in core.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Protocol

import attrs
import numpy as np

from lamina import names
from lamina.format import compression
from lamina.format.block_index import BLOCK, ENTRY, GRANULE, encode_granule, encode_meta
from lamina.format.bloom import BloomFilter
from lamina.format.checksum import crc32c
from lamina.format.columns import encode_column, encode_frame
from lamina.format.compression import ZstdDict
from lamina.format.encoding import DecodeError, get_uvarint, put_uvarint
from lamina.format.part_meta import FORMAT_VERSION, PartMeta
from lamina.format.rows import Rows, row_sizes
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


class PartWriter:
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
        self.granule_streams = [f for f, _ in self.granule_files] + [
            names.tag_data_file(t) for t in self.tag_names
        ]
        if len(set(self.granule_streams)) != len(self.granule_streams):
            raise ValueError(f"two tags map to the same file name: {sorted(self.tag_names)}")
        # current granule
        self._keys: list[bytes] = []
        self._blocks: list[tuple[int, int, int]] = []
        self._frames: list[list[bytes | tuple[int, bytes, int, int]]] = []
        self._gcols: dict[str, list[np.ndarray]] = {c: [] for _, cols in self.granule_files for c in cols}
        self._gtags: dict[str, list[np.ndarray]] = {t: [] for t in self.tag_names}
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

    # -- adding blocks -----------------------------------------------------------------------
    def _check_order(self, key: bytes) -> None:
        if self._last_key is not None and key < self._last_key:
            raise ValueError(f"block key {key!r} after {self._last_key!r}: blocks must be sorted")
        if key != self._last_key:
            self._all_keys.append(key)
        self._last_key = key

    def add_block(self, key: bytes, rows: Rows, tag_data: dict[str, np.ndarray] | None = None) -> None:
        """Add one block (rows share `key`, already in sort order).

        `tag_data` may carry, per tag, precomputed codes (DICT tags, in this part's dictionary)
        or values (PLAIN tags); tags not in it are taken from `rows`.
        """
        frames: list[bytes | tuple[int, bytes, int, int]] = [
            encode_frame([encode_column(self._kinds[c], rows[c]) for c in cols])
            for _, cols in self.block_files
        ]
        self._add(key, rows, frames, tag_data)

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
        self._add(key, rows, list(raw_frames), tag_data)

    def _add(self, key: bytes, rows: Rows, frames: list, tag_data: dict[str, np.ndarray] | None) -> None:
        self._check_order(key)
        ts = rows[self.schema.timestamp]
        n = len(ts)
        if n == 0:
            raise ValueError("empty block")
        lo, hi = int(ts.min()), int(ts.max())
        self._keys.append(key)
        self._blocks.append((n, lo, hi))
        self._frames.append(frames)
        for c, chunks in self._gcols.items():
            chunks.append(rows[c])
        for t, chunks in self._gtags.items():
            if tag_data is not None and t in tag_data:
                chunks.append(tag_data[t])
                continue
            mode, tdict = self.tags.modes[t]
            # raw copies carry no tag columns at all; a part may lack a tag others have
            col = rows.get(self._tags_col, {}).get(t) if self._tags_col else None
            if col is None:
                chunks.append(np.zeros(n, np.int64) if mode == MODE_DICT else np.full(n, None, object))
            elif mode == MODE_DICT:
                assert tdict is not None
                chunks.append(tdict.codes(col))
            else:
                chunks.append(col)
        self._grows += n
        self.rows += n
        self.blocks += 1
        self.min_ts, self.max_ts = min(self.min_ts, lo), max(self.max_ts, hi)
        if self._grows >= self.granule_rows or len(self._blocks) >= DEFAULT_GRANULE_BLOCKS:
            self._flush_granule()

    # -- granules ----------------------------------------------------------------------------
    def _pack_frames(self) -> list[list[tuple[int, bytes, int, int]]]:
        """Compress this granule's new block frames, file by file (in parallel: zstd drops the GIL)."""
        nb = len(self._frames)
        out: list[list[tuple[int, bytes, int, int]]] = [[None] * len(self.block_files) for _ in range(nb)]  # type: ignore[list-item]
        for j, (fname, _) in enumerate(self.block_files):
            todo = [i for i in range(nb) if not isinstance(self._frames[i][j], tuple)]
            zd = self.dictionary if fname in self.layout.dictionary_files else None
            packed = compression.compress_many(
                [self._frames[i][j] for i in todo], self.schema.compression_level, zd, self.threads
            )
            for i, (codec, payload) in zip(todo, packed, strict=True):
                out[i][j] = (codec, payload, len(self._frames[i][j]), crc32c(payload))
            for i in range(nb):
                if isinstance(self._frames[i][j], tuple):
                    out[i][j] = self._frames[i][j]  # raw copy: already packed and checksummed
        return out

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
        nb = len(self._blocks)
        if nb == 0:
            return
        blocks = np.array(self._blocks, dtype=BLOCK)
        entries = np.zeros((nb, len(self.block_files)), dtype=ENTRY)
        for i, frames in enumerate(self._pack_frames()):
            for j, (codec, payload, raw, crc) in enumerate(frames):
                self._write_frame(self.block_files[j][0], codec, payload, raw, crc, entries[i, j])
        gentries = np.zeros(len(self.granule_streams), dtype=ENTRY)
        level = self.schema.compression_level
        for j, (fname, cols) in enumerate(self.granule_files):
            frame = encode_frame(
                [encode_column(self._kinds[c], np.concatenate(self._gcols[c])) for c in cols]
            )
            self._pack_write(fname, frame, gentries[j], level)
        base = len(self.granule_files)
        for k, t in enumerate(self.tag_names):
            mode, tdict = self.tags.modes[t]
            data = np.concatenate(self._gtags[t])
            chunk = encode_chunk(mode, data, len(tdict) if tdict is not None else 0)
            self._pack_write(names.tag_data_file(t), chunk, gentries[base + k], level)
        g = np.zeros((), dtype=GRANULE)
        g["blocks"], g["rows"] = nb, self._grows
        g["min_ts"], g["max_ts"] = blocks["min_ts"].min(), blocks["max_ts"].max()
        self._pack_write(
            names.PRIMARY, encode_granule(self._keys, blocks, entries), g["primary"], INDEX_LEVEL
        )
        self._granules.append(g)
        self._gentries.append(gentries)
        self._first_keys.append(self._keys[0])
        self._last_keys.append(self._keys[-1])
        self._keys, self._blocks, self._frames = [], [], []
        for chunks in (*self._gcols.values(), *self._gtags.values()):
            chunks.clear()
        self._grows = 0

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
    changes = [0] + [i for i in range(1, n) if keys[i] != keys[i - 1]] + [n]
    max_b, max_r = schema.block_max_bytes, schema.block_max_rows or n
    cum = np.concatenate(([0], np.cumsum(sizes)))
    out = []
    for a, b in itertools.pairwise(changes):
        if cum[b] - cum[a] <= max_b and b - a <= max_r:
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
    if schema.column(schema.block_key).kind is ColumnKind.INT64:
        return ((int(value) + (1 << 63)) & ((1 << 64) - 1)).to_bytes(8, "big")  # type: ignore[call-overload]
    return value  # type: ignore[return-value]


MIN_TRAINING_BLOCKS = 200
MAX_TRAINING_BLOCKS = 2000
DICTIONARY_BYTES = 64 * 1024


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
    step = max(1, len(bounds) // MAX_TRAINING_BLOCKS)
    kinds = {c.name: c.kind for c in schema.columns}
    samples = [
        encode_frame([encode_column(kinds[c], rows[c][a:b]) for c in cols])
        for a, b in bounds[::step]
        for f, cols in layout.files
        if f in layout.dictionary_files
    ]
    return compression.train_dictionary(samples, DICTIONARY_BYTES)
