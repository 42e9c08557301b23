"""One writer per store, and only the process that opened it (SPEC §11: fork() with an open
store; the lock removed under a live writer).

Before: a child forked with an open store inherited its buffers and lock, parent and child both
wrote, and every acknowledged batch of one side was lost (700 rows) while `lamina check` said OK;
deleting `lamina.lock` under a live writer let a second writer in, which deleted the first one's
in-flight parts; opening the same store twice in one process said "open in another process".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.errors import ForkedStoreError, StoreAlreadyOpenError, StoreLockedError
from lamina.io.fs import LockLostError
from lamina.testing.kv import kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000


def _batch(tag: bytes, n: int, base: int) -> dict:
    return kv_batch([b"%s-%04d" % (tag, i) for i in range(n)], [T0 + base + i for i in range(n)])


def _keys(root: Path) -> list[bytes]:
    with open_kv_store(str(root)) as s:
        return sorted(r[0] for r in s.engine("kv").query())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_cannot_use_the_parents_store_and_the_parent_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = open_kv_store(str(root))
    kv = s.engine("kv")
    kv.write(_batch(b"parent", 100, 0))
    kv.flush()
    kv.write(_batch(b"buffered", 50, 1000))  # in the buffer at the fork: the parent's to flush
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: every operation must refuse, and closing must flush nothing
        os.close(r)
        refused = 0
        for op in (
            lambda: kv.write(_batch(b"child", 700, 5000)),
            kv.flush,
            kv.query,
            kv.merge_now,
            s.flush,
            lambda: s.engine("kv"),
        ):
            try:
                op()
            except ForkedStoreError as e:
                refused += "fork" in str(e) and str(os.getppid()) in str(e)
            except BaseException:
                pass
        try:
            s.close()
            closed = 1
        except BaseException:
            closed = 0
        os.write(w, b"%d %d" % (refused, closed))
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    report = os.read(r, 100).split()
    os.close(r)
    assert os.WEXITSTATUS(status) == 0
    assert report == [b"6", b"1"], report  # 6 refusals naming the owner, a quiet close
    kv.write(_batch(b"after", 100, 2000))  # the parent's lock and buffers are still its own
    kv.flush()
    s.close()
    keys = _keys(root)
    assert len(keys) == 250 and len(set(keys)) == 250
    assert not [k for k in keys if k.startswith(b"child")]


def test_a_child_process_that_opens_the_store_itself_is_told_another_process_has_it(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with open_kv_store(str(root)):
        code = (
            "import sys\nfrom lamina.testing.kv import open_kv_store\n"
            "from lamina.errors import StoreLockedError\n"
            "try:\n    open_kv_store(sys.argv[1])\nexcept StoreLockedError as e:\n    print(e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60
        )
    assert "open in another process" in out.stdout, out.stderr


def test_opening_the_same_store_twice_in_one_process_says_so(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = open_kv_store(str(root))
    with pytest.raises(StoreAlreadyOpenError) as info:
        open_kv_store(str(root))
    assert "already open in this process" in str(info.value)
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    with pytest.raises(StoreAlreadyOpenError):  # the same directory under another name
        open_kv_store(str(alias))
    s.close()
    open_kv_store(str(root)).close()  # closed: free again


def test_removing_a_lock_file_never_lets_a_second_writer_in(tmp_path: Path) -> None:
    """The lock is the store directory itself: nothing an operator can unlink."""
    root = tmp_path / "store"
    with open_kv_store(str(root)) as s:
        s.engine("kv").write(_batch(b"a", 10, 0))
        for leftover in root.glob("*.lock"):
            leftover.unlink()
        code = (
            "import sys\nfrom lamina.testing.kv import open_kv_store\n"
            "from lamina.errors import StoreLockedError\n"
            "try:\n    open_kv_store(sys.argv[1]).close(); print('opened')\nexcept StoreLockedError:\n"
            "    print('locked')\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "locked", out.stderr
        s.engine("kv").flush()
    assert len(_keys(root)) == 10


def test_a_writer_whose_store_directory_was_replaced_stops_before_committing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = open_kv_store(str(root))
    kv = s.engine("kv")
    kv.write(_batch(b"a", 10, 0))
    kv.flush()
    shutil.move(str(root), str(tmp_path / "moved"))
    other = open_kv_store(str(root))  # a second writer locks the new directory at the same path
    other.engine("kv").write(_batch(b"b", 5, 100))
    other.engine("kv").flush()
    kv.write(_batch(b"c", 10, 200))
    with pytest.raises(LockLostError):
        kv.flush()
    other.close()
    assert _keys(root) == sorted(b"b-%04d" % i for i in range(5))  # nothing of the first writer
    with pytest.raises(LockLostError):
        s.close()  # still buffered, still refused
    assert len(_keys(tmp_path / "moved")) == 10  # the first writer's acknowledged rows


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_that_outlives_its_parent_does_not_keep_the_store_locked(tmp_path: Path) -> None:
    """Found by review: the child kept its copy of the lock, so a parent killed without closing
    left a long-lived worker holding every later writer out."""
    root = tmp_path / "store"
    code = (
        "import os, sys, time\nfrom lamina.testing.kv import kv_batch, open_kv_store\n"
        "s = open_kv_store(sys.argv[1])\n"
        "s.engine('kv').write(kv_batch([b'a'], [1])); s.engine('kv').flush()\n"
        "if os.fork() == 0:\n    os.close(1); os.close(2); time.sleep(15); os._exit(0)\n"
        "print('parent gone', flush=True); os._exit(0)  # killed, in effect: no close()\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60
    )
    assert "parent gone" in parent.stdout, parent.stderr
    with open_kv_store(str(root)) as s:  # the child is still sleeping
        assert [r[0] for r in s.engine("kv").query()] == [b"a"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_cannot_drop_or_list_quarantined_parts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = open_kv_store(str(root))
    pid = os.fork()
    if pid == 0:
        refused = 0
        for op in (s.quarantined, lambda: s.drop_quarantined("x", force=True), lambda: s.salvage("x")):
            try:
                op()
            except ForkedStoreError:
                refused += 1
            except BaseException:
                pass
        os._exit(refused)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 3
    s.close()


def test_a_writer_of_an_older_lamina_holding_lamina_lock_keeps_a_new_one_out(tmp_path: Path) -> None:
    """Lamina before this version locked `lamina.lock`; while that file exists both are held."""
    import fcntl

    root = tmp_path / "store"
    open_kv_store(str(root)).close()
    legacy = root / "lamina.lock"
    legacy.write_bytes(b"")
    fd = os.open(legacy, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the older writer would
    try:
        with pytest.raises(StoreLockedError):
            open_kv_store(str(root))
    finally:
        os.close(fd)
    open_kv_store(str(root)).close()


def test_a_coupled_flush_whose_store_directory_was_replaced_writes_no_intent(tmp_path: Path) -> None:
    """The intent is a transaction's commit point: ownership is checked before it is written."""
    root = tmp_path / "store"
    s = open_kv_store(str(root))
    group = s.couple([("kv", "a"), ("kv", "b")])
    for ds in ("a", "b"):
        s.engine("kv").write(_batch(b"x", 3, 0), dataset=ds)
    group.flush()
    shutil.move(str(root), str(tmp_path / "moved"))
    other = open_kv_store(str(root))
    for ds in ("a", "b"):
        s.engine("kv").write(_batch(b"y", 3, 10), dataset=ds)
    with pytest.raises(LockLostError):
        group.flush()
    assert not (root / "txn").exists() or not list((root / "txn").iterdir())
    assert not (root / "kv").exists()  # nothing of the first writer in the new store
    other.close()
    with pytest.raises(LockLostError):
        s.close()
