"""The store-wide read descriptor cache (io/descriptors.py): bounded, never closes a descriptor a
read is using, survives EMFILE by letting go of idle ones."""

from __future__ import annotations

import errno
import random
import threading

import pytest

from lamina.errors import ShortReadError
from lamina.io.descriptors import DescriptorCache
from lamina.io.fs import OSFileSystem
from lamina.io.sim import SimFS


def _files(fs: SimFS, n: int) -> list[str]:
    paths = [f"/d{i % 7}/f{i}" for i in range(n)]
    for i, p in enumerate(paths):
        fs.write_file(p, bytes([i % 256]) * 64)
    return paths


def test_it_keeps_at_most_capacity_idle_descriptors_and_reads_right() -> None:
    fs = SimFS()
    paths = _files(fs, 40)
    cache = DescriptorCache(fs, capacity=5)
    for i, p in enumerate(paths * 2):
        assert cache.pread_exact(p, 3, 4) == bytes([i % 40 % 256]) * 4
        assert cache.open_count <= 5
    assert cache.evicted >= 70
    with pytest.raises(ShortReadError):
        cache.pread_exact(paths[0], 60, 10)


def test_a_descriptor_in_use_is_never_evicted_or_closed_under_the_read() -> None:
    fs = SimFS()
    paths = _files(fs, 10)
    cache = DescriptorCache(fs, capacity=2)
    pinned = cache._acquire(paths[0])
    for p in paths[1:]:
        cache.pread_exact(p, 0, 1)
    assert paths[0] in cache._entries  # over capacity rather than closing a busy descriptor
    cache.forget("/d0")  # the part is closed while the read is still going
    assert pinned.file.pread(0, 2) == b"\0\0"  # still readable: closed only after the read ends
    cache._release(pinned)
    with pytest.raises(OSError):
        pinned.file.pread(0, 1)


def test_emfile_lets_go_of_idle_descriptors_and_retries_once() -> None:
    fs = SimFS()
    paths = _files(fs, 4)
    cache = DescriptorCache(fs, capacity=8)
    cache.pread_exact(paths[0], 0, 1)
    fault = fs.inject("open_read", paths[1], errno.EMFILE)
    assert cache.pread_exact(paths[1], 0, 1) == b"\x01"
    assert fault.fired == 1 and cache.open_count == 1  # the idle one was closed to make room
    fs.inject("open_read", paths[2], errno.EMFILE, once=False)
    with pytest.raises(OSError) as info:
        cache.pread_exact(paths[2], 0, 1)
    assert info.value.errno == errno.EMFILE


def test_concurrent_readers_through_a_tiny_cache_always_read_their_own_file(tmp_path) -> None:
    fs = OSFileSystem()
    paths = []
    for i in range(30):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * 4096)
        paths.append(str(p))
    cache = DescriptorCache(fs, capacity=3)
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2000):
            i = rng.randrange(30)
            got = cache.pread_exact(paths[i], rng.randrange(4000), 16)
            if got != bytes([i]) * 16:
                errors.append(f"file {i} read {got[:4]!r}")

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    cache.close()
    assert cache.open_count == 0
