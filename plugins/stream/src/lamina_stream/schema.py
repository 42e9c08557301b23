"""The stream engine's declaration: columns, block key, and the files they live in.

Modelled on BanyanDB's stream part (shared/reference/banyandb.md §3.3): rows sorted by (series,
timestamp), one block per series cut at 8 Ki rows or 2 MiB. The series ID is the block key, so
queries take it from the block index; its column is stored per block (`series.bin`, one tiny
frame a block, checksummed like every frame). Timestamps are read by every scan, so they are
stored per granule; element IDs too, in a file of their
own (read only for the rows a query returns or an ID lookup checks), because the core keeps
per-block Bloom filters only for granule-file columns (`filter_columns`): an element-ID lookup
then reads the one block that holds it instead of decoding every ID (measured: 400 ms -> ~1 ms
for 200k lines). Tags use the core TAGS column (per-part dictionaries, per-granule chunks), and
the layout turns on the core's per-block tag summaries (`tags.tff`: a Bloom filter per tag and
int min/max per block, BanyanDB's `.tff`), which queries use to skip blocks. A part-level Bloom
filter over series IDs (`series.filter`) skips parts in series lookups. Unlike BanyanDB there is
no separate inverted index for element IDs, and no `.tfm`/`.tf` files per tag family: the core's
per-tag `.tm`/`.t` files play that role.
"""

from __future__ import annotations

from lamina import BlockSchema, Column, ColumnKind, FileLayout

SERIES = "series.bin"
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
    files=((SERIES, ("series_id",)), (TIMESTAMPS, ("timestamp",)), (ELEMENTS, ("element_id",))),
    key_filter=SERIES_FILTER,
    tag_types="tag.type",
    granule_files=(TIMESTAMPS, ELEMENTS),
    tag_filters=True,
    filter_columns=("element_id",),
)

#: Element IDs are caller-chosen strings (a log line's ID, an event UUID).
MAX_ELEMENT_ID = 256
