"""Salvage: recover the verifiable rows of a quarantined part into a new committed part.

BanyanDB's answer to a torn part was "delete it by hand". Lamina reads every block of the
quarantined part whose frames all pass their checksums and strict decoding, and commits those rows
as a new part of the same table; blocks that fail are counted as lost, never read into the store.
The new part and the table manifest's "salvaged" mark are one commit, so a salvage is atomic and
is never applied twice. The quarantined directory itself is left for the operator to drop.

`restore` is a salvage that must be complete: it refuses unless every row verifies.
"""

from __future__ import annotations

import posixpath

import attrs

from lamina import names
from lamina.errors import CorruptPartError, LaminaError
from lamina.format.part_reader import DirSource, PartReader, parse_metadata
from lamina.format.records import RecordError, read_record_file
from lamina.format.rows import Rows, concat


class SalvageError(LaminaError):
    """The part cannot be salvaged (or restored); the message says why."""


@attrs.frozen
class SalvageReport:
    table: str
    part: str
    rows_total: int
    rows_recovered: int
    rows_lost: int
    blocks_recovered: int
    blocks_lost: int
    new_part: str | None
    problems: tuple[str, ...]
    #: The source part's data age (PartMeta.seq), inherited by the salvaged part.
    source_seq: int = 0
    #: The source part's lineage (merge inputs), carried over where they still exist on disk.
    source_lineage: tuple[int, ...] = ()


def read_verifiable_rows(table: object, part: str) -> tuple[list[Rows], SalvageReport]:
    """Every block of `corrupt/<part>` whose frames verify, and what was lost. Reads only."""
    t = table  # a lamina.table.Table (typed loosely to avoid an import cycle)
    path = posixpath.join(t.path, names.CORRUPT_DIR, part)  # type: ignore[attr-defined]
    fs = t.fs  # type: ignore[attr-defined]
    if not fs.is_dir(path):
        raise SalvageError(f"no quarantined part {part} in {t.path}")  # type: ignore[attr-defined]
    try:
        meta = parse_metadata(read_record_file(fs, posixpath.join(path, names.METADATA)), part)
    except (CorruptPartError, RecordError) as e:
        raise SalvageError(f"{part}: metadata.json is unusable ({e}); nothing can be located") from None
    try:
        reader = PartReader.open(
            DirSource(fs, path),
            part,
            meta=meta,
            kinds=t.kinds,  # type: ignore[attr-defined]
            key_filter=t.env.layout.key_filter,  # type: ignore[attr-defined]
            engine=t.engine.name,  # type: ignore[attr-defined]
        )
        blocks = reader.blocks
    except CorruptPartError as e:
        raise SalvageError(
            f"{part}: its block index is damaged ({e.reason.value} in {e.file}); blocks cannot be "
            "located, so no row can be verified"
        ) from None
    good: list[Rows] = []
    problems: list[str] = []
    rows_ok = blocks_ok = blocks_lost = 0
    try:
        for i in range(len(blocks.keys)):
            try:
                rows = reader.read_block(i)
            except CorruptPartError as e:
                blocks_lost += 1
                problems.append(f"block {i}: {e.reason.value} in {e.file} at {e.offset}")
                continue
            good.append(rows)
            blocks_ok += 1
            rows_ok += int(blocks.rows[i])
    finally:
        reader.close()
    report = SalvageReport(
        table=t.path,  # type: ignore[attr-defined]
        part=part,
        rows_total=meta.rows,
        rows_recovered=rows_ok,
        rows_lost=meta.rows - rows_ok,
        blocks_recovered=blocks_ok,
        blocks_lost=blocks_lost,
        new_part=None,
        problems=tuple(problems),
        source_seq=meta.data_seq,
        source_lineage=tuple(meta.lineage),
    )
    return good, report


def salvage(table: object, part: str, *, require_complete: bool = False) -> SalvageReport:
    """Commit the verifiable rows of quarantined `part` into `table` (see module docstring)."""
    t = table
    pid = names.parse_part_name(part[:16])
    if pid is None:
        raise SalvageError(f"{part!r} is not a part name")
    if pid in t.salvaged:  # type: ignore[attr-defined]
        raise SalvageError(f"{part} was already salvaged into {t.path}; drop it instead")  # type: ignore[attr-defined]
    good, report = read_verifiable_rows(t, part)
    if require_complete and report.rows_lost:
        raise SalvageError(
            f"{part}: {report.rows_lost} of {report.rows_total} rows fail verification "
            f"({'; '.join(report.problems[:3])}); refusing to restore. Use salvage to keep the rest."
        )
    rows = concat(t.engine.schema, good) if good else None  # type: ignore[attr-defined]
    new = t.commit_salvaged(rows, pid, report.source_seq, report.source_lineage)  # type: ignore[attr-defined]
    t.log.bind(part=part).warning(  # type: ignore[attr-defined]
        "salvaged {} of {} rows of {} into {} ({} blocks lost)",
        report.rows_recovered,
        report.rows_total,
        part,
        new,
        report.blocks_lost,
    )
    return attrs.evolve(report, new_part=new)
