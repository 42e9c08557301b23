"""`metadata.json`: a part's commit record, written last and atomically.

It lists the exact size of every file in the part, so opening a part compares sizes (one stat per
file) and catches a truncated file before any read; it carries whole-file checksums of the small
files (index and sidecars) and lineage, so a manifest can be rebuilt from parts alone.
"""

from __future__ import annotations

import attrs

#: Version 2 added `column_ranges`, the per-block tag filters (`tags.tff`), string-array tag values
#: and dataset options. A version-1 reader refuses version-2 records with a clear
#: "format_version 2 is not supported" instead of mistaking new fields for damage; this reader
#: reads both (every version-2 addition is optional, absent in version-1 parts).
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)


#: Part IDs are 16 hex digits in directory names: the largest one that fits. Allocation past it is
#: an error, never a wider name that Lamina's own parser would call foreign.
MAX_PART_ID = 2**64 - 1


def _non_negative(_i: object, a: attrs.Attribute, v: int) -> None:  # type: ignore[type-arg]
    if v < 0:
        raise ValueError(f"{a.name} must be >= 0 (got {v})")


def _part_id(_i: object, a: attrs.Attribute, v: int) -> None:  # type: ignore[type-arg]
    if not 0 <= v <= MAX_PART_ID:
        raise ValueError(f"{a.name} {v} is not a part ID (0 to {MAX_PART_ID:#x})")


def _part_ids(_i: object, a: attrs.Attribute, v: list[int]) -> None:  # type: ignore[type-arg]
    bad = [x for x in v if not 0 <= x <= MAX_PART_ID]
    if bad:
        raise ValueError(f"{a.name} holds {bad[0]}, which is not a part ID (0 to {MAX_PART_ID:#x})")


def _next_id(_i: object, a: attrs.Attribute, v: int) -> None:  # type: ignore[type-arg]
    if not 0 <= v <= MAX_PART_ID + 1:
        raise ValueError(f"{a.name} {v} is outside the part ID space")


@attrs.frozen
class PartMeta:
    format_version: int
    part_id: int = attrs.field(validator=_part_id)
    engine: str
    dataset: str
    rows: int = attrs.field(validator=_non_negative)
    blocks: int = attrs.field(validator=_non_negative)
    granules: int = attrs.field(validator=_non_negative)
    min_ts: int = attrs.field()
    max_ts: int = attrs.field()
    #: Hex of the smallest and largest block key.
    min_key: str
    max_key: str
    uncompressed_bytes: int = attrs.field(validator=_non_negative)
    #: Every file of the part (metadata.json aside) -> exact size in bytes.
    files: dict[str, int]
    #: CRC32C of whole small files (meta.bin, sidecars, tag dictionaries). Data files are
    #: checksummed per block in the index instead, so a read never needs the whole file.
    checksums: dict[str, int]
    #: Data file -> the columns encoded in it, in order (the part's own layout, independent of
    #: what the engine declares today).
    layout: dict[str, list[str]]
    #: Files stored as one frame per block, in the order of the block index entries.
    block_streams: list[str]
    #: Streams stored as one frame per granule (granule-mode data files, then tag files).
    granule_streams: list[str]
    #: Tag name -> value type (str, int, float, bytes, or mixed) for the TAGS column.
    tags: dict[str, str]
    #: Source part IDs of a merge output (empty for a flush).
    lineage: list[int] = attrs.field(validator=_part_ids)
    level: int = attrs.field(validator=_non_negative)
    #: CRC32C id of the zstd dictionary in `zstd.dict` (0 = none).
    dictionary_id: int
    created_ns: int
    #: Data age: a flush's part ID, the largest of its inputs' for a merge output, the source's for a
    #: salvaged part. Part IDs are allocation order, which a concurrent merge can invert; merges
    #: hand rows to the equal-key rule oldest data first by this, not by ID. 0 = the part ID.
    seq: int = 0
    #: Range column (BlockSchema.range_columns) -> [min, max] over the part's rows: part pruning
    #: by a column other than the block key. Absent in parts written before it existed.
    column_ranges: dict[str, list[int]] = attrs.field(factory=dict)

    @property
    def data_seq(self) -> int:
        return self.seq or self.part_id

    def __attrs_post_init__(self) -> None:
        if self.rows and self.min_ts > self.max_ts:
            raise ValueError(f"min_ts {self.min_ts} > max_ts {self.max_ts}")

    def data_size(self) -> int:
        return sum(self.files.values())


@attrs.frozen
class Manifest:
    """`<epoch:016x>.snp`: the live part IDs of a table at one epoch. Its rename is the commit."""

    format_version: int
    epoch: int = attrs.field(validator=_non_negative)
    parts: list[int] = attrs.field(validator=_part_ids)
    created_ns: int
    #: Quarantined part IDs whose rows were salvaged (or restored) into a live part. Recorded in
    #: the same commit as the salvaged part, so a salvage is atomic and never repeated.
    salvaged: list[int] = attrs.field(factory=list, validator=_part_ids)
    #: High-water mark of allocated part IDs: an ID is never reused, even after its part was
    #: dropped (a reused ID would inherit marks such as `salvaged`).
    next_part_id: int = attrs.field(default=0, validator=_next_id)


@attrs.frozen
class QuarantineReason:
    """`corrupt/<part>/reason.json`: why a part was set aside, for the operator."""

    format_version: int
    engine: str
    dataset: str
    table: str
    part: str
    stage: str
    reason: str
    file: str
    offset: int
    detail: str
    expected: str
    actual: str
    time: str
    lamina_version: str
