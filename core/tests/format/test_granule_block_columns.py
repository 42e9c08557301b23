"""`PartReader.granule_block_columns`: a block-mode column for a whole granule in one read.

It must equal reading the granule's blocks one by one, verify every frame's checksum (a flipped
bit is a `CorruptPartError` naming the frame, never wrong values), and refuse columns that are
not stored per block.
"""

from __future__ import annotations

import posixpath

import numpy as np
import pytest

from lamina import CorruptPartError
from lamina.io.sim import SimFS
from lamina.testing import damage as dmg
from lamina.testing.kv import kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def part():
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    kv = s.engine("kv")
    keys = [b"key-%03d" % (i % 40) for i in range(400)]
    kv.write(kv_batch(keys, [T0 + i for i in range(400)]))
    kv.flush()
    (table,) = kv.tables()
    (h,) = table.live_parts
    yield fs, table.path, h.name, h.reader
    s.close()


def test_equals_the_granules_blocks_read_one_by_one(part) -> None:
    _, _, _, reader = part
    assert reader.n_granules >= 1 and len(reader.granule_blocks(0)) == 40
    for g in range(reader.n_granules):
        got = reader.granule_block_columns(g, ["value", "key"])
        blocks = [reader.read_block(i, ["key", "value"], []) for i in reader.granule_blocks(g)]
        assert list(got["value"]) == [v for b in blocks for v in b["value"]]
        assert list(got["key"]) == [k for b in blocks for k in b["key"]]
        assert len(got["key"]) == int(reader.index.granules[g]["rows"])


def test_a_flipped_bit_in_any_frame_is_a_checksum_error_naming_it(part) -> None:
    fs, table, pname, reader = part
    pdir = posixpath.join(table, pname)
    frames = dmg.block_frames(fs, pdir, "values.bin")
    victim = frames[len(frames) // 2]
    dmg.flip_bit(fs, posixpath.join(pdir, "values.bin"), victim.offset + victim.size // 2, 1)
    with pytest.raises(CorruptPartError) as e:  # the open reader reads the damaged bytes
        reader.granule_block_columns(0, ["value"])
    assert (e.value.file, e.value.offset, e.value.reason) == ("values.bin", victim.offset, "checksum")


def test_refuses_a_column_not_stored_per_block(part) -> None:
    _, _, _, reader = part
    with pytest.raises(KeyError):
        reader.granule_block_columns(0, ["ts"])
    assert isinstance(reader.granule_column(0, "ts"), np.ndarray)
