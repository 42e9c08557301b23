"""What an engine declares about its data: columns, keys, block cut, file layout.

An engine never says how bytes reach the disk; it says what its rows look like. The core derives
the whole part format from a `BlockSchema` plus a `FileLayout`, so every engine (third-party ones
included) gets checksums, strict reads, the commit protocol and quarantine without writing any.
"""

from __future__ import annotations

import re
from enum import StrEnum

import attrs


class ColumnKind(StrEnum):
    INT64 = "int64"
    FLOAT64 = "float64"
    BYTES = "bytes"
    #: UTF-8 text; a block with few distinct values is dictionary encoded.
    STRING = "string"
    #: A map of tag name -> scalar (str, int, float, bytes) per row. Each tag becomes its own
    #: column files (`<tag>.t` values per block, `<tag>.tm` part-level dictionary), so a query
    #: reads only the tags it filters or projects.
    TAGS = "tags"


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _check_name(_inst: object, attr: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if not _NAME.match(value):
        raise ValueError(f"{attr.name} {value!r} must be an identifier of at most 63 characters")


@attrs.frozen
class Column:
    name: str = attrs.field(validator=_check_name)
    kind: ColumnKind = attrs.field(converter=ColumnKind)
    #: Absent values allowed (BYTES/STRING only; numbers must always be present).
    nullable: bool = False


@attrs.frozen
class FileLayout:
    """Which data file each column lives in, and the part-level sidecars.

    Columns that share a file are encoded together per block (one checksummed frame), which keeps
    per-block bookkeeping low: a trace block is a handful of frames, not one per column.
    """

    files: tuple[tuple[str, tuple[str, ...]], ...]
    #: Sidecar holding a bloom filter over the block keys (e.g. `traceID.filter`), or None.
    key_filter: str | None = None
    #: Sidecar listing tag names and their value types.
    tag_types: str = "tag.type"
    #: Data files compressed with the table's trained zstd dictionary (payload-like columns).
    dictionary_files: tuple[str, ...] = ()
    #: Data files stored as one frame per granule instead of one per block: small fixed-width
    #: columns (timestamps) that scans read for every block anyway.
    granule_files: tuple[str, ...] = ()
    #: Write the `tags.tff` sidecar: per block and per tag, a Bloom filter over the tag's values
    #: and the min/max of its int values, so tag-filtered queries skip blocks without reading
    #: them (`PartReader.blocks_may_match`, `blocks_int_range`). Off by default: parts written
    #: without it read as before, every block "may match".
    tag_filters: bool = False
    #: Granule-file columns that get per-block Bloom filters in `tags.tff` too (e.g. an element
    #: ID looked up by value): `PartReader.column_blocks_may_match`. Needs `tag_filters`.
    filter_columns: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        names = [f for f, _ in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate data files in layout: {names}")
        for f in (*self.dictionary_files, *self.granule_files):
            if f not in names:
                raise ValueError(f"{f!r} is not a data file of this layout")
        granule_cols = {c for f, cols in self.files if f in self.granule_files for c in cols}
        for c in self.filter_columns:
            if c not in granule_cols:
                raise ValueError(f"filter column {c!r} must be a column of a granule file")
        if self.filter_columns and not self.tag_filters:
            raise ValueError("filter_columns needs tag_filters=True (they share tags.tff)")
        for f in names:
            if f.endswith((".t", ".tm", ".json", ".tmp")) or f in ("meta.bin", "primary.bin", "tags.tff"):
                raise ValueError(f"data file name {f!r} collides with a core file name")

    def file_of(self, column: str) -> str:
        for name, cols in self.files:
            if column in cols:
                return name
        raise KeyError(column)


@attrs.frozen
class BlockSchema:
    """The declarative description of one engine dataset's rows."""

    columns: tuple[Column, ...]
    #: Rows with equal block key are stored together; blocks are ordered by it. BYTES or INT64.
    block_key: str
    #: Row order inside a part; starts with the block key. Ties keep arrival order (stable).
    sort_key: tuple[str, ...]
    #: INT64 column of nanosecond timestamps: time segments, part/block pruning. Required.
    timestamp: str
    block_max_bytes: int = 2 * 1024 * 1024
    #: 0 = no row limit (trace blocks are cut by bytes only).
    block_max_rows: int = 0
    granule_bytes: int = 128 * 1024
    compression_level: int = 3
    #: INT64 columns whose per-part min/max the core records in metadata.json (`column_ranges`),
    #: so queries can prune whole parts by a range of a column other than the block key (sidx's
    #: `key`). Each must live in a granule-mode data file, where every writer path (flush, merge
    #: raw copy) has its values at hand.
    range_columns: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in {names}")
        by_name = {c.name: c for c in self.columns}
        if self.block_key not in by_name or by_name[self.block_key].kind not in (
            ColumnKind.BYTES,
            ColumnKind.INT64,
        ):
            raise ValueError(f"block_key {self.block_key!r} must name a BYTES or INT64 column")
        if not self.sort_key or self.sort_key[0] != self.block_key:
            raise ValueError("sort_key must start with the block key")
        for k in (*self.sort_key, self.timestamp):
            if k not in by_name:
                raise ValueError(f"{k!r} is not a column")
        if by_name[self.timestamp].kind is not ColumnKind.INT64:
            raise ValueError("timestamp must be an INT64 column")
        if sum(c.kind is ColumnKind.TAGS for c in self.columns) > 1:
            raise ValueError("at most one TAGS column")
        for k in self.range_columns:
            if k not in by_name or by_name[k].kind is not ColumnKind.INT64:
                raise ValueError(f"range column {k!r} must name an INT64 column")

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def tags_column(self) -> str | None:
        return next((c.name for c in self.columns if c.kind is ColumnKind.TAGS), None)

    def check_layout(self, layout: FileLayout) -> None:
        """Every non-tag column must live in exactly one data file."""
        placed = [c for _, cols in layout.files for c in cols]
        wanted = [c.name for c in self.columns if c.kind is not ColumnKind.TAGS]
        if sorted(placed) != sorted(wanted):
            raise ValueError(f"file layout places {sorted(placed)}, schema has {sorted(wanted)}")
        for k in self.range_columns:
            if layout.file_of(k) not in layout.granule_files:
                raise ValueError(f"range column {k!r} must live in a granule-mode data file")
