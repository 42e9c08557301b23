"""The block schema and file layout of one measure, derived from its definition.

In the spirit of BanyanDB's measure part: sort key (series, timestamp); `timestamps.bin` holds
series IDs, timestamps and versions; `fv.bin` the field values; the entity tags and other tags go
through the core's TAGS column (per-part dictionaries: ideal for entity values, which repeat),
with `tag.type` listing them. `timestamps.bin` is stored per granule (up to 8 Ki rows): a scan
selects rows from whole arrays of series, timestamps and versions, one frame per granule, before
reading any field; `fv.bin` is stored per block (one series, up to 8 Ki points), as BanyanDB does,
so a query reads the field values of the series it selected only, and a merge copies the blocks of
a series no other part holds without decoding them. Encodings are the core's: timestamps and versions
as delta/const int lists, floats as decimal ints with an exponent when lossless, strings with a
dictionary when a block has few distinct values.
"""

from __future__ import annotations

from lamina import BlockSchema, Column, ColumnKind, FileLayout
from lamina_measure.options import MeasureOptions

TIMESTAMPS = "timestamps.bin"
FIELD_VALUES = "fv.bin"
TAG_TYPES = "tag.type"
#: BanyanDB's maxBlockLength for measure: 8 Ki points per block.
BLOCK_MAX_ROWS = 8192

KINDS = {
    "int64": ColumnKind.INT64,
    "float64": ColumnKind.FLOAT64,
    "string": ColumnKind.STRING,
    "bytes": ColumnKind.BYTES,
}


def schema_for(opts: MeasureOptions) -> BlockSchema:
    return BlockSchema(
        columns=(
            Column("series", ColumnKind.INT64),
            Column("timestamp", ColumnKind.INT64),
            Column("version", ColumnKind.INT64),
            *(Column(name, KINDS[tp]) for name, tp in opts.fields),
            Column("tags", ColumnKind.TAGS),
        ),
        block_key="series",
        sort_key=("series", "timestamp"),
        timestamp="timestamp",
        block_max_rows=BLOCK_MAX_ROWS,
    )


def layout_for(opts: MeasureOptions) -> FileLayout:
    return FileLayout(
        files=((TIMESTAMPS, ("series", "timestamp", "version")), (FIELD_VALUES, tuple(opts.field_names))),
        tag_types=TAG_TYPES,
        granule_files=(TIMESTAMPS,),
    )
