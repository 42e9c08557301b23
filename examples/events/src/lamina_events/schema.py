"""The events engine's declaration: columns, block key, and the files they live in.

One block per source (the application or host that emitted the events), rows sorted by time
inside it. `events.bin` holds the source, kind and body of each block's rows in one checksummed
frame; timestamps are stored per granule in `ts.bin`, since every time-range scan reads them.
"""

from __future__ import annotations

from lamina import BlockSchema, Column, ColumnKind, FileLayout

EVENTS = "events.bin"
TIMESTAMPS = "ts.bin"
SOURCE_FILTER = "source.filter"

SCHEMA = BlockSchema(
    columns=(
        Column("source", ColumnKind.BYTES),
        Column("ts", ColumnKind.INT64),
        Column("kind", ColumnKind.STRING),
        Column("body", ColumnKind.BYTES),
        Column("tags", ColumnKind.TAGS),
    ),
    block_key="source",
    sort_key=("source", "ts"),
    timestamp="ts",
)

LAYOUT = FileLayout(
    files=((EVENTS, ("source", "kind", "body")), (TIMESTAMPS, ("ts",))),
    key_filter=SOURCE_FILTER,
    granule_files=(TIMESTAMPS,),
)

MAX_SOURCE_BYTES = 255
MAX_KIND_CHARS = 64
