"""Real disk-full tests: the store lives on a tiny tmpfs (bytes or inodes), works until the kernel
answers ENOSPC, and must then fail cleanly (the real ENOSPC, not a BufferError; no descriptor
left on a deleted partial file, whose space would stay allocated; no partial merge output), lose
nothing acknowledged, and work again once space is freed. The watermarks must refuse writes
before the disk is full. Needs root to mount a tmpfs; skipped (with the reason) otherwise."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamina
from lamina.check import check_store
from lamina.disk import DiskFullError, Watermarks
from lamina.errors import PoisonedTableError
from lamina.testing.kv import KV, kv_batch

T0 = 1_700_000_000_000_000_000


def _mount(tmp_path: Path, options: str) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path, "size=384k")


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path, "size=64m,nr_inodes=48")


def _deleted_descriptors(under: Path) -> list[str]:
    """Descriptors of this process on files under `under` that were unlinked (their space is
    still allocated until the descriptor is closed)."""
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(under)) and target.endswith(" (deleted)"):
            out.append(target)
    return out


def _open(path: str, **kw: Any) -> lamina.Store:
    kw.setdefault("disk_watermarks", None)  # these tests reach the kernel's ENOSPC on purpose
    return lamina.Store(path, engines=[KV], background=False, **kw)


def _batch(seq: int) -> dict[str, Any]:
    keys = [b"s%04d-%03d" % (seq, j) for j in range(200)]
    return kv_batch(keys, [T0 + seq * 1000 + j for j in range(200)], [os.urandom(64) for _ in keys])


def _keys(store: lamina.Store) -> list[bytes]:
    return sorted(r[0] for r in store.engine("kv").query())


def test_real_enospc_fails_the_flush_cleanly_and_a_retry_after_freeing_space_succeeds(
    small_mount: Path,
) -> None:
    ballast = small_mount / "ballast"
    ballast.write_bytes(os.urandom(96 * 1024))  # freed later, to make room again
    path = str(small_mount / "store")
    store = _open(path)
    kv = store.engine("kv")
    acked: list[bytes] = []
    failure: OSError | None = None
    for seq in range(200):
        batch = _batch(seq)
        kv.write(batch)
        try:
            kv.flush()
        except OSError as e:
            failure = e
            pending = batch["key"]
            break
        acked += batch["key"]
    assert failure is not None, "the tmpfs never filled up"
    assert type(failure) is not BufferError and failure.errno == errno.ENOSPC, repr(failure)
    assert not _deleted_descriptors(small_mount), "a descriptor still holds a removed partial file's space"
    assert acked, "not even one flush fitted: the test proves nothing"
    assert _keys(store) == sorted([*acked, *pending])  # acknowledged + still buffered, once each
    poisoned = any(t.poisoned for t in kv.tables())
    ballast.unlink()
    if poisoned:  # an fsync reported the failure: reopen, as the poison demands
        with pytest.raises(PoisonedTableError):
            kv.flush()
        store.close()
        store = _open(path)
        assert _keys(store) == sorted(acked)
        store.engine("kv").write(_batch(seq))
    store.engine("kv").flush()  # the retry, once space was freed
    store.close()
    again = _open(path)
    try:
        assert _keys(again) == sorted([*acked, *pending])
        assert check_store(path, deep=True, registry=again.registry).ok
    finally:
        again.close()


def _parts(path: str) -> list[str]:
    return [p.name for p in Path(path).rglob("shard-0/*") if p.is_dir() and len(p.name) == 16]


def test_a_merge_that_fills_the_disk_midway_fails_with_enospc_and_leaves_nothing(
    small_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lamina.disk

    monkeypatch.setattr(lamina.disk, "MERGE_SPACE_FACTOR", 0.0)  # let it start, so it fails midway
    monkeypatch.setattr(lamina.disk, "MERGE_MARGIN_BYTES", 0)
    path = str(small_mount / "store")
    store = _open(path)
    kv = store.engine("kv")
    acked: list[bytes] = []
    for seq in range(3):
        kv.write(_batch(seq))
        kv.flush()
        acked += _batch(seq)["key"]
    ballast = small_mount / "ballast"
    free = os.statvfs(small_mount).f_bavail * os.statvfs(small_mount).f_frsize
    ballast.write_bytes(b"\0" * max(0, free - 24 * 1024))  # less room than the merged output needs
    before = sorted(_parts(path))
    with pytest.raises(OSError) as info:
        kv.merge_now()
    assert type(info.value) is not BufferError and info.value.errno == errno.ENOSPC, repr(info.value)
    assert sorted(_parts(path)) == before, "the merge left its partial output on the full disk"
    assert not _deleted_descriptors(small_mount)
    ballast.unlink()
    if any(t.poisoned for t in kv.tables()):
        store.close()
        store = _open(path)
        kv = store.engine("kv")
    assert kv.merge_now() == 1
    assert _keys(store) == sorted(acked)
    store.close()


def test_a_merge_that_cannot_fit_is_refused_before_it_writes_anything(small_mount: Path) -> None:
    path = str(small_mount / "store")
    store = _open(path)
    kv = store.engine("kv")
    for seq in range(3):
        kv.write(_batch(seq))
        kv.flush()
    ballast = small_mount / "ballast"
    free = os.statvfs(small_mount).f_bavail * os.statvfs(small_mount).f_frsize
    ballast.write_bytes(b"\0" * max(0, free - 64 * 1024))
    before = sorted(_parts(path))
    with pytest.raises(DiskFullError) as info:
        kv.merge_now()
    assert "not started" in str(info.value) and info.value.errno == errno.ENOSPC
    assert sorted(_parts(path)) == before
    assert not any(t.poisoned for t in kv.tables())  # refused, not failed: nothing to reopen
    store.close()


def test_watermarks_refuse_writes_before_the_disk_is_full_and_resume_below_the_low_mark(
    small_mount: Path,
) -> None:
    path = str(small_mount / "store")
    store = _open(path, disk_watermarks=Watermarks(high=0.6, low=0.4, interval_s=0))
    kv = store.engine("kv")
    ballast = small_mount / "ballast"
    ballast.write_bytes(os.urandom(96 * 1024))
    acked: list[bytes] = []
    refused = None
    for seq in range(200):
        try:
            kv.write(_batch(seq))
        except DiskFullError as e:
            refused = e
            break
        kv.flush()  # never ENOSPC: the watermark stops writes well before the disk is full
        acked += _batch(seq)["key"]
    assert refused is not None and acked, "the watermark never refused a write"
    assert "high watermark" in str(refused)
    assert _keys(store) == sorted(acked)
    ballast.unlink()  # below the high mark now; below the low one too?
    usage = 1 - os.statvfs(small_mount).f_bavail / os.statvfs(small_mount).f_blocks
    if usage >= 0.4:
        with pytest.raises(DiskFullError):  # hysteresis: still refused between the marks
            kv.write(_batch(999))
    else:
        kv.write(_batch(999))
        kv.flush()
        acked += _batch(999)["key"]
    store.close()
    assert check_store(path, deep=True, registry=_open(path).registry).ok


def test_inode_exhaustion_fails_the_flush_cleanly_and_a_retry_after_freeing_succeeds(
    few_inodes: Path,
) -> None:
    path = str(few_inodes / "store")
    store = _open(path)
    kv = store.engine("kv")
    acked: list[bytes] = []
    failure: OSError | None = None
    fillers = []
    for seq in range(200):
        kv.write(_batch(seq))
        try:
            kv.flush()
        except OSError as e:
            failure = e
            break
        acked += _batch(seq)["key"]
        if seq == 1:  # use up most inodes with files outside the store
            for i in range(200):
                try:
                    f = few_inodes / f"filler-{i}"
                    f.write_bytes(b"")
                    fillers.append(f)
                except OSError:
                    break
            if fillers:
                fillers.pop().unlink()
    assert failure is not None and failure.errno == errno.ENOSPC, failure
    assert acked, "not even one flush fitted: the test proves nothing"
    assert not _deleted_descriptors(few_inodes)
    for f in fillers:
        f.unlink()
    if any(t.poisoned for t in kv.tables()):
        store.close()
        store = _open(path)
        kv = store.engine("kv")
        assert _keys(store) == sorted(acked)
        kv.write(_batch(seq))
    kv.flush()
    acked += _batch(seq)["key"]
    assert _keys(store) == sorted(acked)
    store.close()


def test_a_large_write_that_hits_enospc_raises_it_and_abort_frees_the_file(small_mount: Path) -> None:
    """A buffered write of more than the writer's buffer goes to the OS from a view of the
    buffer; when it fails, that view must not outlive the call (the next resize raised
    BufferError, masking the ENOSPC, and the descriptor of the removed file was never closed)."""
    from lamina.io import durable
    from lamina.io.fs import OSFileSystem

    fs = OSFileSystem()
    path = str(small_mount / "big.bin")
    w = durable.SeqWriter(fs, path)
    with pytest.raises(OSError) as info:
        for _ in range(8):
            w.write(os.urandom(200 * 1024))
    assert type(info.value) is not BufferError and info.value.errno == errno.ENOSPC, repr(info.value)
    w.abort()
    Path(path).unlink()
    assert not _deleted_descriptors(small_mount)


def test_lamina_demo_on_a_full_disk_says_so_and_exits_without_a_traceback(small_mount: Path) -> None:
    """`lamina demo` used to end in a traceback when the disk filled up: it now stops with one
    message saying what happened and that what was flushed is durable."""
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamina.cli",
            "demo",
            str(small_mount / "demo"),
            "--spans",
            "20000",
            "--rows",
            "500",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"},
    )
    assert done.returncode == 1, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert "demo stopped" in done.stderr
    assert "No space left" in done.stderr or "disk is" in done.stderr
