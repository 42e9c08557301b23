"""Deep verification of the statistics a reader prunes on, against the data they summarise.

Checksums prove bytes are what the writer wrote, not that the writer was right: a `metadata.json`
whose `min_ts`/`max_ts` are wrong, with its checksum recomputed (what a writer bug produces),
verifies, and time queries then skip the part silently. Every summary that lets a query skip
something is therefore recomputed from the decoded data here, and a disagreement is damage
(`CorruptPartError`, reason `metadata`), because a summary that is wrong either way is wrong:

- per block: its row count, time bounds and key (every value of the block-key column);
- per granule (`meta.bin`): its time bounds and first/last keys;
- per part (`metadata.json`): rows, time bounds, key range, `column_ranges`;
- the key filter (bloom) must admit every block key; tag filters are checked by `verify_all`.

It reads every block of the part once, so it runs only in a deep check (`lamina check --deep`,
`lamina repair`'s validation is the shallow one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lamina import names
from lamina.errors import CorruptionReason, CorruptPartError
from lamina.format.part_writer import key_of
from lamina.schema import BlockSchema

if TYPE_CHECKING:
    from lamina.format.part_reader import PartReader


def _lie(part: PartReader, file: str, what: str, recorded: object, actual: object) -> CorruptPartError:
    return CorruptPartError(
        part.name,
        file,
        -1,
        CorruptionReason.METADATA,
        f"{what} disagrees with the data (a query pruning on it would skip or misread rows)",
        engine=part.engine,
        expected=actual,
        actual=recorded,
    )


def verify_statistics(part: PartReader, schema: BlockSchema) -> int:
    """Recompute every pruning statistic of `part` from its data; returns the blocks checked."""
    meta, bt = part.meta, part.blocks
    ts_col, key_col = schema.timestamp, schema.block_key
    ranges: dict[str, list[int]] = {}
    for i in range(len(bt.keys)):
        block = part.read_block(i, [ts_col, key_col, *schema.range_columns], [])
        ts = np.asarray(block[ts_col], dtype=np.int64)
        if len(ts) != int(bt.rows[i]):
            raise _lie(part, names.PRIMARY, f"row count of block {i}", int(bt.rows[i]), len(ts))
        if len(ts) and (int(ts.min()), int(ts.max())) != (int(bt.min_ts[i]), int(bt.max_ts[i])):
            got = (int(ts.min()), int(ts.max()))
            raise _lie(
                part, names.PRIMARY, f"time range of block {i}", (int(bt.min_ts[i]), int(bt.max_ts[i])), got
            )
        keys = {key_of(schema, v) for v in block[key_col]}
        if keys and keys != {bt.keys[i]}:
            raise _lie(
                part, names.PRIMARY, f"key of block {i}", bt.keys[i].hex(), sorted(k.hex() for k in keys)
            )
        if not part.may_contain(bt.keys[i]):
            raise _lie(
                part, names.METADATA, f"key range or key filter (block {i}'s key)", "absent", bt.keys[i].hex()
            )
        for c in schema.range_columns:
            vals = np.asarray(block[c], dtype=np.int64)
            if len(vals):
                lo, hi = int(vals.min()), int(vals.max())
                r = ranges.get(c)
                ranges[c] = [lo, hi] if r is None else [min(r[0], lo), max(r[1], hi)]
    _verify_granules(part)
    if meta.rows:
        if (meta.min_ts, meta.max_ts) != (int(bt.min_ts.min()), int(bt.max_ts.max())):
            got = (int(bt.min_ts.min()), int(bt.max_ts.max()))
            raise _lie(part, names.METADATA, "min_ts/max_ts", (meta.min_ts, meta.max_ts), got)
        if (meta.min_key, meta.max_key) != (bt.keys[0].hex(), bt.keys[-1].hex()):
            got = (bt.keys[0].hex(), bt.keys[-1].hex())
            raise _lie(part, names.METADATA, "min_key/max_key", (meta.min_key, meta.max_key), got)
    for c, recorded in meta.column_ranges.items():
        if ranges.get(c) != list(recorded):
            raise _lie(part, names.METADATA, f"column_ranges[{c!r}]", list(recorded), ranges.get(c))
    return len(bt.keys)


def _verify_granules(part: PartReader) -> None:
    bt, index = part.blocks, part.index
    start = 0
    for g, rec in enumerate(index.granules):
        n = int(rec["blocks"])
        if not n:
            continue
        lo, hi = int(bt.min_ts[start : start + n].min()), int(bt.max_ts[start : start + n].max())
        if (int(rec["min_ts"]), int(rec["max_ts"])) != (lo, hi):
            raise _lie(
                part,
                names.META_INDEX,
                f"time range of granule {g}",
                (int(rec["min_ts"]), int(rec["max_ts"])),
                (lo, hi),
            )
        first, last = bt.keys[start], bt.keys[start + n - 1]
        if (index.first_keys[g], index.last_keys[g]) != (first, last):
            raise _lie(
                part,
                names.META_INDEX,
                f"key range of granule {g}",
                (index.first_keys[g].hex(), index.last_keys[g].hex()),
                (first.hex(), last.hex()),
            )
        start += n
