"""Disk watermarks and the merge space check, on a SimFS with a size (the real-kernel versions are
in tests/crash/test_enospc_tmpfs.py)."""

from __future__ import annotations

import errno

import pytest

from lamina import names
from lamina.disk import DiskFullError, Watermarks
from lamina.io.sim import SimFS
from lamina.testing.kv import kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _batch(seq: int, n: int = 50) -> dict:
    return kv_batch(
        [b"k%04d-%03d" % (seq, i) for i in range(n)],
        [T0 + seq * 1000 + i for i in range(n)],
        [b"v" * 200] * n,
    )


def _used_inodes(fs: SimFS) -> int:
    space = fs.disk_space(ROOT)
    return space.total_inodes - space.free_inodes


def _parts(fs: SimFS) -> list[str]:
    out = []
    for seg in fs.listdir(f"{ROOT}/kv/default"):
        t = f"{ROOT}/kv/default/{seg}/shard-0"
        out += [n for n in fs.listdir(t) if names.parse_part_name(n) is not None]
    return sorted(out)


def test_writes_are_refused_above_the_high_watermark_and_resume_below_the_low_one(sim: SimFS) -> None:
    sim.set_capacity(nbytes=400_000)
    sim.write_file("/ballast", b"\0" * 150_000)
    s = open_kv_store(ROOT, fs=sim, disk_watermarks=Watermarks(high=0.6, low=0.45, interval_s=0))
    kv = s.engine("kv")
    written = 0
    with pytest.raises(DiskFullError) as info:
        for seq in range(100):
            kv.write(_batch(seq))
            kv.flush()
            written += 50
    assert info.value.errno == errno.ENOSPC and "high watermark (60%)" in str(info.value)
    assert written and len(kv.query()) == written  # everything accepted before is stored
    used = 1 - sim.disk_space(ROOT).free_bytes / 400_000
    assert used >= 0.45, "the test needs the store itself above the low mark"
    sim.remove("/ballast")
    if 1 - sim.disk_space(ROOT).free_bytes / 400_000 >= 0.45:
        with pytest.raises(DiskFullError):  # between the marks: still refused (no flapping)
            kv.write(_batch(500))
    s.close()


def test_a_refused_write_resumes_once_usage_drops_below_the_low_mark(sim: SimFS) -> None:
    sim.set_capacity(nbytes=1_000_000)
    sim.write_file("/ballast", b"\0" * 900_000)
    s = open_kv_store(ROOT, fs=sim, disk_watermarks=Watermarks(high=0.9, low=0.5, interval_s=0))
    kv = s.engine("kv")
    with pytest.raises(DiskFullError):
        kv.write(_batch(0))
    sim.remove("/ballast")
    kv.write(_batch(0))
    kv.flush()
    assert len(kv.query()) == 50
    s.close()


def test_inodes_count_as_much_as_bytes(sim: SimFS) -> None:
    s = open_kv_store(ROOT, fs=sim, disk_watermarks=Watermarks(high=0.5, low=0.4, interval_s=0))
    used = _used_inodes(sim)
    sim.set_capacity(inodes=used * 2 - 1)  # over half the inodes are already in use
    with pytest.raises(DiskFullError) as info:
        s.engine("kv").write(_batch(0))
    assert "inodes" in str(info.value)
    s.close()


def test_a_merge_that_cannot_fit_never_starts(sim: SimFS) -> None:
    s = open_kv_store(ROOT, fs=sim, disk_watermarks=None)
    kv = s.engine("kv")
    for seq in range(3):
        kv.write(_batch(seq))
        kv.flush()
    before = _parts(sim)
    used = sim.disk_space(ROOT).total_bytes - sim.disk_space(ROOT).free_bytes
    sim.set_capacity(nbytes=used + 100_000)  # room for more flushes, not for a merged copy + margin
    with pytest.raises(DiskFullError) as info:
        kv.merge_now()
    assert "not started" in str(info.value)
    assert _parts(sim) == before
    assert not any(t.poisoned for t in kv.tables())
    sim.set_capacity(nbytes=None)
    assert kv.merge_now() == 1
    assert len(kv.query()) == 150
    s.close()


def test_inode_exhaustion_fails_a_flush_cleanly_and_keeps_the_rows_buffered(sim: SimFS) -> None:
    s = open_kv_store(ROOT, fs=sim, disk_watermarks=None)
    kv = s.engine("kv")
    kv.write(_batch(0))
    kv.flush()
    sim.set_capacity(inodes=_used_inodes(sim) + 2)  # two entries left
    kv.write(_batch(1))
    with pytest.raises(OSError) as info:
        kv.flush()
    assert info.value.errno == errno.ENOSPC
    assert len(kv.query()) == 100  # stored + still buffered
    assert len(_parts(sim)) == 1  # the partial output was removed
    sim.set_capacity(inodes=None)
    if any(t.poisoned for t in kv.tables()):
        s.close()
        s = open_kv_store(ROOT, fs=sim, disk_watermarks=None)
        kv = s.engine("kv")
        kv.write(_batch(1))
    kv.flush()
    assert len(kv.query()) == 100
    s.close()


def test_between_the_watermarks_writes_stay_refused_until_usage_is_below_the_low_one(sim: SimFS) -> None:
    """Hysteresis, deterministically: refused above the high mark, still refused between the
    marks, accepted again below the low one (no flapping at the line)."""
    sim.set_capacity(nbytes=1_000_000)
    s = open_kv_store(ROOT, fs=sim, disk_watermarks=Watermarks(high=0.85, low=0.6, interval_s=0))
    kv = s.engine("kv")
    kv.write(_batch(0))
    kv.flush()
    for name, size in (("/b1", 500_000), ("/b2", 200_000), ("/b3", 200_000)):
        sim.write_file(name, b"\0" * size)
    with pytest.raises(DiskFullError):  # ~90 % used
        kv.write(_batch(1))
    sim.remove("/b3")
    assert 0.6 <= 1 - sim.disk_space(ROOT).free_bytes / 1_000_000 < 0.85
    with pytest.raises(DiskFullError):  # between the marks: still refused
        kv.write(_batch(1))
    sim.remove("/b2")
    kv.write(_batch(1))  # below the low mark: accepted again
    kv.flush()
    assert len(kv.query()) == 100
    s.close()
