"""The stream engine's declaration: columns, block key, and the files they live in.

Modelled on BanyanDB's stream part (shared/reference/banyandb.md §3.3): rows sorted by (series,
timestamp), one block per series cut at 8 Ki rows or 2 MiB. Series IDs and timestamps are small
integers every scan reads, so they are stored per granule; element IDs are read only for the
blocks a query returns, so they are stored per block. Tags use the core TAGS column (per-part
dictionaries, per-granule chunks), and the layout turns on the core's per-block tag summaries
(`tags.tff`: a Bloom filter per tag and int min/max per block, BanyanDB's `.tff`), which queries
use to skip blocks. A part-level Bloom filter over series IDs (`series.filter`) skips parts in
series lookups.
"""

from __future__ import annotations

from lamina import BlockSchema, Column, ColumnKind, FileLayout

TIMESTAMPS = "timestamps.bin"
ELEMENTS = "elements.bin"
SERIES_FILTER = "series.filter"

SCHEMA = BlockSchema(
    columns=(
        Column("series_id", ColumnKind.INT64),
        Column("timestamp", ColumnKind.INT64),
        Column("element_id", ColumnKind.STRING),
        Column("tags", ColumnKind.TAGS),
    ),
    block_key="series_id",
    sort_key=("series_id", "timestamp"),
    timestamp="timestamp",
    block_max_bytes=2 * 1024 * 1024,
    block_max_rows=8192,
)

LAYOUT = FileLayout(
    files=((TIMESTAMPS, ("series_id", "timestamp")), (ELEMENTS, ("element_id",))),
    key_filter=SERIES_FILTER,
    tag_types="tag.type",
    granule_files=(TIMESTAMPS,),
    tag_filters=True,
)

#: Element IDs are caller-chosen strings (a log line's ID, an event UUID).
MAX_ELEMENT_ID = 256
