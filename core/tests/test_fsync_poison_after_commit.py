"""Regression (issue 7, found by the I/O-error sweep): an fsync that fails AFTER the commit point
(pruning the old manifest, removing a retired part) used to be logged as a warning and ignored.
SPEC §4: any fsync failure poisons the table until reopen; the commit itself stands."""

from __future__ import annotations

import errno

import pytest

from lamina.errors import PoisonedTableError
from lamina.io.sim import SimFS
from lamina.testing.kv import kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000


def _fail_dir_fsync_after(fs: SimFS, op: str, suffix: str) -> list[object]:
    """Arm an EIO on the table-directory fsync that follows the first `op` on a `*suffix` path."""
    armed: list[object] = []

    def observe(_index: int, name: str, path: str) -> None:
        if not armed and name == op and path.endswith(suffix):
            table = path.rsplit("/", 1)[0]
            armed.append(fs.inject("fsync_dir", table, errno.EIO))

    fs.observer = observe
    return armed


def test_fsync_failure_while_pruning_the_old_manifest_poisons_but_keeps_the_flush() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a"], [T0]))
    kv.flush()
    armed = _fail_dir_fsync_after(fs, "remove", ".snp")
    kv.write(kv_batch([b"b"], [T0 + 1]))
    kv.flush()  # committed (the manifest is durable): acknowledged
    assert armed and armed[0].fired == 1  # type: ignore[attr-defined]
    assert all(t.poisoned for t in kv.tables())
    with pytest.raises(PoisonedTableError):  # refused before anything is buffered
        kv.write(kv_batch([b"c"], [T0 + 2]))
    fs.observer = None
    again = open_kv_store("/db", fs=fs.crash_state("power"))
    assert [r[0] for r in again.engine("kv").query()] == [b"a", b"b"]
    again.close()


def test_fsync_failure_while_removing_a_merged_input_poisons_the_table() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    kv = s.engine("kv")
    for i, k in enumerate([b"a", b"b"]):
        kv.write(kv_batch([k], [T0 + i]))
        kv.flush()
    armed = _fail_dir_fsync_after(fs, "rmdir", "0000000000000001")
    assert kv.merge_now() == 1
    assert armed and armed[0].fired == 1  # type: ignore[attr-defined]
    assert all(t.poisoned for t in kv.tables())
    fs.observer = None
    again = open_kv_store("/db", fs=fs.crash_state("power"))
    assert [r[0] for r in again.engine("kv").query()] == [b"a", b"b"]
    again.close()
