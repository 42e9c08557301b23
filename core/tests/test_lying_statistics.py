"""A part whose recorded statistics disagree with its data is damage, found by `check --deep`.

Before: a `metadata.json` with a wrong `min_ts`/`max_ts` (its checksum recomputed, as a writer bug
would produce) made time queries skip the part silently, and `lamina check --deep` said OK. Each
case here forges one statistic a query prunes on, keeping every checksum valid, so only a
comparison with the data can tell.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

import attrs
import numpy as np
import pytest

from lamina import names
from lamina.check import Kind, check_store
from lamina.format.block_index import decode_meta, encode_meta
from lamina.format.checksum import crc32c
from lamina.format.part_meta import SUPPORTED_VERSIONS, PartMeta
from lamina.format.part_writer import pack_small_file, unpack_small_file
from lamina.format.records import dump_record, load_record
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing.kv import KV, kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _registry() -> Registry:
    r = Registry()
    r._add_engine(KV, "<test>")
    return r


def _fill(fs: SimFS) -> str:
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    for p in range(3):
        kv.write(kv_batch([b"k%d-%d" % (p, i) for i in range(20)], [T0 + p * 1000 + i for i in range(20)]))
        kv.flush()
    s.close()
    seg = fs.listdir(f"{ROOT}/kv/default")[0]
    table = f"{ROOT}/kv/default/{seg}/shard-0"
    part = sorted(n for n in fs.listdir(table) if names.parse_part_name(n) is not None)[1]
    return posixpath.join(table, part)


def _rewrite_meta(fs: SimFS, part: str, change: Callable[[PartMeta], PartMeta]) -> None:
    path = posixpath.join(part, names.METADATA)
    meta = load_record(fs.read_file(path), PartMeta, SUPPORTED_VERSIONS)
    fs.write_file(path, dump_record(change(meta)))


def _forge_meta_bin(
    fs: SimFS, part: str, change: Callable[[np.ndarray, list[bytes], list[bytes]], None]
) -> None:
    """Change granule records in meta.bin and fix every checksum that covers it."""
    mpath = posixpath.join(part, names.META_INDEX)
    meta = load_record(fs.read_file(posixpath.join(part, names.METADATA)), PartMeta, SUPPORTED_VERSIONS)
    index = decode_meta(
        unpack_small_file(fs.read_file(mpath)), len(meta.block_streams), len(meta.granule_streams)
    )
    granules = index.granules.copy()
    first, last = list(index.first_keys), list(index.last_keys)
    change(granules, first, last)
    data = pack_small_file(encode_meta(first, last, granules, index.entries, index.n_block_streams))
    fs.write_file(mpath, data)
    _rewrite_meta(
        fs,
        part,
        lambda m: attrs.evolve(
            m,
            files={**m.files, names.META_INDEX: len(data)},
            checksums={**m.checksums, names.META_INDEX: crc32c(data)},
        ),
    )


def _shift_granule_time(g: np.ndarray, _f: list[bytes], _l: list[bytes]) -> None:
    g["min_ts"] += 10_000
    g["max_ts"] += 10_000


def _rename_granule_key(_g: np.ndarray, first: list[bytes], _l: list[bytes]) -> None:
    first[0] = b"a" + first[0]


FORGERIES: dict[str, Callable[[SimFS, str], None]] = {
    "part min_ts/max_ts": lambda fs, p: _rewrite_meta(
        fs, p, lambda m: attrs.evolve(m, min_ts=m.min_ts + 500, max_ts=m.max_ts + 500)
    ),
    "part max_ts too small": lambda fs, p: _rewrite_meta(fs, p, lambda m: attrs.evolve(m, max_ts=m.min_ts)),
    "part key range": lambda fs, p: _rewrite_meta(fs, p, lambda m: attrs.evolve(m, min_key=b"k1-5".hex())),
    "granule time range": lambda fs, p: _forge_meta_bin(fs, p, _shift_granule_time),
    "granule first key": lambda fs, p: _forge_meta_bin(fs, p, _rename_granule_key),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_statistic_is_found_by_the_deep_check(sim: SimFS, forgery: str) -> None:
    part = _fill(sim)
    report = check_store(ROOT, fs=sim, registry=_registry(), deep=True)
    assert report.ok, report.problems  # the store as written verifies
    FORGERIES[forgery](sim, part)
    shallow = check_store(ROOT, fs=sim, registry=_registry())
    assert shallow.ok, "the forgery broke a checksum: it would not test statistics"
    report = check_store(ROOT, fs=sim, registry=_registry(), deep=True)
    (problem,) = report.damage
    assert (problem.kind, problem.part, problem.reason) == (
        Kind.CORRUPT_PART,
        posixpath.basename(part),
        "metadata",
    )
    assert "disagrees with the data" in problem.detail


def test_the_deep_check_passes_every_engine_statistic_of_a_merged_part(sim: SimFS) -> None:
    _fill(sim)
    s = open_kv_store(ROOT, fs=sim)
    assert s.engine("kv").merge_now() == 1
    s.close()
    report = check_store(ROOT, fs=sim, registry=_registry(), deep=True)
    assert report.ok and report.parts_checked == 1, report.problems
