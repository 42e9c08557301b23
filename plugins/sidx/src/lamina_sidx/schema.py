"""The sidx engine's declaration: columns, sort key, and the files they live in.

Modelled on BanyanDB's sidx (reference/banyandb.md §3.4): entries of (series, int64 key, data
bytes, tags), sorted by (series, key); `keys.bin` holds the small integer columns, `data.bin` the
opaque payloads, and each tag its own files (the core's TAGS column).

- `series` is the block key: a block holds entries of one series only, so a series lookup is a
  binary search over the block keys of each part.
- `key` is stored per granule (`keys.bin`), like trace timestamps: a range query reads it for the
  candidate blocks and reads `data.bin` only for blocks with a hit (block pruning by key range).
  It is also a `range_column`, so each part's metadata carries its [min, max] key and whole parts
  outside the range are skipped without reading anything (part pruning by key range).
- `timestamp` (ns) is required: the core places every row in a time segment by it, and retention
  drops whole segments. An entry's timestamp is the time of what it indexes (for trace, the span's
  start), so an index entry lives in the same segment as its trace and leaves with it.
- Blocks are cut at 1024 entries: fine enough that a narrow key range reads few `data.bin`
  frames, coarse enough that the per-block index stays small (16-byte keys + 3 ENTRY records).
"""

from __future__ import annotations

from lamina import BlockSchema, Column, ColumnKind, FileLayout

KEYS = "keys.bin"
DATA = "data.bin"

SCHEMA = BlockSchema(
    columns=(
        Column("series", ColumnKind.INT64),
        Column("key", ColumnKind.INT64),
        Column("timestamp", ColumnKind.INT64),
        Column("data", ColumnKind.BYTES),
        Column("tags", ColumnKind.TAGS),
    ),
    block_key="series",
    sort_key=("series", "key"),
    timestamp="timestamp",
    block_max_bytes=1024 * 1024,
    block_max_rows=1024,
    range_columns=("key",),
)

LAYOUT = FileLayout(
    files=((KEYS, ("series", "key", "timestamp")), (DATA, ("data",))),
    tag_types="tag.type",
    granule_files=(KEYS,),
)
