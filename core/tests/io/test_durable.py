"""The durable write primitives: offsets, close semantics, atomic replace, strict reads.

Most tests run on SimFS because it can prove durability (a power-loss state) and inject the fsync
failure that must poison a writer; the behaviour that does not need either is also checked on the
real disk, so the two file systems cannot drift apart unnoticed.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import ShortReadError
from lamina.io import durable
from lamina.io.durable import (
    FSYNC_STATS,
    TMP_SUFFIX,
    SeqWriter,
    fsync_dir,
    makedirs_durable,
    mkdir_durable,
    rmtree,
    write_atomic,
    write_file_durable,
)
from lamina.io.fs import FileSystem, OSFileSystem
from lamina.io.reader import read_exact
from lamina.io.sim import SimFS, SimulatedCrash


@pytest.fixture
def sim() -> SimFS:
    fs = SimFS()
    fs.makedirs("/d")
    return fs


@pytest.fixture(params=["os", "sim"])
def fs_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FileSystem, str]]:
    """The same test on the real disk and on SimFS (rooted at a fresh, durable directory)."""
    if request.param == "os":
        yield OSFileSystem(), str(tmp_path)
    else:
        fs = SimFS()
        fs.makedirs("/root")
        yield fs, "/root"


# --------------------------------------------------------------------------------- SeqWriter


def test_seqwriter_returns_the_offset_each_write_starts_at(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    w = SeqWriter(fs, f"{root}/f")
    assert [w.write(b"abc"), w.write(b""), w.write(bytearray(b"defg")), w.write(b"h")] == [
        0,
        3,
        3,
        7,
    ]
    assert w.bytes_written == 8
    w.close()
    assert fs.read_file(f"{root}/f") == b"abcdefgh"
    assert fs.file_size(f"{root}/f") == w.bytes_written


def test_seqwriter_flushes_its_buffer_once_it_is_large(sim: SimFS) -> None:
    w = SeqWriter(sim, "/d/f")
    big = b"x" * (durable._BUFFER + 10)
    assert w.write(big) == 0
    assert sim.file_size("/d/f") == len(big)  # flushed without waiting for close
    assert w.write(b"tail") == len(big)
    assert sim.file_size("/d/f") == len(big)  # small write stays buffered
    w.close()
    assert sim.read_file("/d/f") == big + b"tail"


def test_seqwriter_close_makes_the_data_durable(sim: SimFS) -> None:
    w = SeqWriter(sim, "/d/f")
    w.write(b"payload")
    fsync_dir(sim, "/d")
    assert sim.crash_state("power").read_file("/d/f") == b""
    w.close()
    assert sim.crash_state("power").read_file("/d/f") == b"payload"


def test_seqwriter_close_is_idempotent(sim: SimFS) -> None:
    w = SeqWriter(sim, "/d/f")
    w.write(b"x")
    w.close()
    ops = sim.op_count
    w.close()
    assert sim.op_count == ops  # no second write or fsync
    assert sim.read_file("/d/f") == b"x"


def test_seqwriter_close_propagates_an_fsync_error_and_leaves_the_writer_closed(
    sim: SimFS,
) -> None:
    fault = sim.inject("fsync", "/d/f", errno.EIO)
    failures = FSYNC_STATS.failures
    w = SeqWriter(sim, "/d/f")
    w.write(b"data")
    with pytest.raises(OSError) as exc:
        w.close()
    assert exc.value.errno == errno.EIO
    assert fault.fired == 1
    assert FSYNC_STATS.failures == failures + 1
    ops = sim.op_count
    w.close()  # never retry an fsync: the second close is a no-op, not a "successful" fsync
    assert sim.op_count == ops
    assert [op.op for op in sim.ops].count("fsync") == 1
    with pytest.raises(ValueError, match="closed"):
        w.write(b"more")


def test_seqwriter_close_propagates_a_write_error_without_fsyncing(sim: SimFS) -> None:
    sim.inject("write", "/d/f", errno.ENOSPC, short_write=2)
    w = SeqWriter(sim, "/d/f")
    w.write(b"data")
    with pytest.raises(OSError) as exc:
        w.close()
    assert exc.value.errno == errno.ENOSPC
    assert "fsync" not in [op.op for op in sim.ops]
    w.close()


def test_seqwriter_write_after_close_raises(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    w = SeqWriter(fs, f"{root}/f")
    w.close()
    with pytest.raises(ValueError, match="closed SeqWriter"):
        w.write(b"x")
    assert fs.read_file(f"{root}/f") == b""


def test_seqwriter_refuses_to_overwrite_an_existing_file(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    write_file_durable(fs, f"{root}/f", b"first")
    with pytest.raises(FileExistsError):
        SeqWriter(fs, f"{root}/f")
    assert fs.read_file(f"{root}/f") == b"first"


def test_seqwriter_abort_makes_nothing_durable(sim: SimFS) -> None:
    w = SeqWriter(sim, "/d/f")
    w.write(b"x")
    w.abort()
    w.close()  # closed by abort: still a no-op
    assert "fsync" not in [op.op for op in sim.ops]
    with pytest.raises(ValueError):
        w.write(b"y")


# ------------------------------------------------------------------------------ write_atomic


def test_write_atomic_replaces_content_and_removes_a_stale_tmp(
    fs_root: tuple[FileSystem, str],
) -> None:
    fs, root = fs_root
    path = f"{root}/meta.json"
    write_file_durable(fs, path, b"old")
    write_file_durable(fs, path + TMP_SUFFIX, b"stale half-written tmp")
    write_atomic(fs, path, b"new")
    assert fs.read_file(path) == b"new"
    assert fs.listdir(root) == ["meta.json"]


def test_write_atomic_creates_a_missing_file(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    write_atomic(fs, f"{root}/m", b"first")
    assert fs.read_file(f"{root}/m") == b"first"
    assert fs.listdir(root) == ["m"]


def test_write_atomic_survives_power_loss_once_it_returns(sim: SimFS) -> None:
    sim.write_file("/d/m", b"old")
    write_atomic(sim, "/d/m", b"new")
    assert sim.crash_state("power").tree() == {"/d": None, "/d/m": b"new"}


def test_write_atomic_failure_keeps_old_content_and_removes_the_tmp(sim: SimFS) -> None:
    sim.write_file("/d/m", b"old")
    sim.inject("fsync", "/d/m" + TMP_SUFFIX, errno.EIO)
    with pytest.raises(OSError) as exc:
        write_atomic(sim, "/d/m", b"new")
    assert exc.value.errno == errno.EIO
    assert sim.tree() == {"/d": None, "/d/m": b"old"}
    assert "replace" not in [op.op for op in sim.ops]


def test_write_atomic_propagates_a_directory_fsync_error(sim: SimFS) -> None:
    sim.write_file("/d/m", b"old")
    sim.inject("fsync_dir", "/d", errno.EIO)
    with pytest.raises(OSError):
        write_atomic(sim, "/d/m", b"new")
    # Visible but not durable: the caller must treat this as a failed commit.
    assert sim.read_file("/d/m") == b"new"
    assert sim.crash_state("power").read_file("/d/m") == b"old"


# ---------------------------------------------------------------------- directories, rmtree


def test_mkdir_durable_makes_the_entry_durable(sim: SimFS) -> None:
    mkdir_durable(sim, "/d/s")
    assert sim.crash_state("power").is_dir("/d/s")


def test_makedirs_durable_creates_every_missing_parent(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    makedirs_durable(fs, f"{root}/a/b/c")
    assert fs.is_dir(f"{root}/a/b/c")
    makedirs_durable(fs, f"{root}/a/b/c")  # existing: no-op
    assert fs.listdir(f"{root}/a/b") == ["c"]


def test_rmtree_is_idempotent(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    makedirs_durable(fs, f"{root}/t/a/b")
    write_file_durable(fs, f"{root}/t/a/f", b"x")
    write_file_durable(fs, f"{root}/t/a/b/g", b"y")
    write_file_durable(fs, f"{root}/lone", b"z")
    rmtree(fs, f"{root}/t")
    assert not fs.exists(f"{root}/t")
    rmtree(fs, f"{root}/t")  # already gone: fine
    rmtree(fs, f"{root}/lone")  # a plain file is removed too
    rmtree(fs, f"{root}/never-existed")
    assert fs.listdir(root) == []


def test_rmtree_can_be_rerun_after_a_crash_midway(sim: SimFS) -> None:
    for i in range(3):
        sim.write_file(f"/d/t/f{i}", b"x")
    sim.crash_at(1)
    with pytest.raises(SimulatedCrash):
        rmtree(sim, "/d/t")
    after = sim.crash_state("process")
    assert after.listdir("/d/t") == ["f1", "f2"]
    rmtree(after, "/d/t")
    assert after.tree() == {"/d": None}


# ------------------------------------------------------------------------------- read_exact


def test_read_exact_raises_short_read_error_with_the_details(
    fs_root: tuple[FileSystem, str],
) -> None:
    fs, root = fs_root
    write_file_durable(fs, f"{root}/f", b"0123456789")
    f = fs.open_read(f"{root}/f")
    try:
        assert read_exact(f, 2, 3) == b"234"
        with pytest.raises(ShortReadError) as exc:
            read_exact(f, 5, 10)
        err = exc.value
        assert (err.file, err.offset, err.wanted, err.got) == (f"{root}/f", 5, 10, 5)
        assert f"{root}/f" in str(err)
        with pytest.raises(ShortReadError) as exc:
            read_exact(f, 10, 1)  # exactly at EOF
        assert exc.value.got == 0
    finally:
        f.close()


def test_read_exact_of_zero_bytes_does_not_touch_the_file(sim: SimFS) -> None:
    sim.write_file("/d/f", b"abc")
    f = sim.open_read("/d/f")
    fault = sim.inject("pread", "*", errno.EIO, once=False)
    assert read_exact(f, 100, 0) == b""
    assert fault.fired == 0


def test_read_exact_detects_a_truncated_file(sim: SimFS) -> None:
    sim.write_file("/d/f", b"x" * 4096)
    sim.truncate("/d/f", 1000)
    with pytest.raises(ShortReadError) as exc:
        read_exact(sim.open_read("/d/f"), 512, 1024)
    assert (exc.value.wanted, exc.value.got) == (1024, 488)


# -------------------------------------------------------------------------------- FSYNC_STATS


def test_fsync_stats_count_data_and_directory_fsyncs(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    count = dict(FSYNC_STATS.count)
    seconds = dict(FSYNC_STATS.seconds)
    write_atomic(fs, f"{root}/m", b"x")  # one data fsync, one directory fsync
    mkdir_durable(fs, f"{root}/s")  # one directory fsync
    assert FSYNC_STATS.count["data"] == count["data"] + 1
    assert FSYNC_STATS.count["dir"] == count["dir"] + 2
    assert FSYNC_STATS.seconds["data"] >= seconds["data"]
    assert FSYNC_STATS.seconds["dir"] >= seconds["dir"]
