"""Regressions for durability and concurrency bugs found in review (each failed before its fix)."""

from __future__ import annotations

import errno
import posixpath
import threading

import attrs
import numpy as np
import pytest

import lamina
import lamina.table as table_mod
from lamina.format.rows import take
from lamina.io.durable import rmtree
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing.kv import KV, kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000


def _parts(store: lamina.Store, n: int = 3) -> None:
    kv = store.engine("kv")
    for p in range(n):
        kv.write(kv_batch([b"k%d" % i for i in range(p * 10, p * 10 + 10)], [T0 + i for i in range(10)]))
        kv.flush()


def test_failed_directory_fsync_after_the_manifest_rename_never_deletes_committed_data() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    _parts(s)
    t = s.engine("kv").tables()[0]
    orig, calls = fs.fsync_dir, {"n": 0}

    def flaky(path: str) -> None:  # the fsync after the new manifest's rename reports EIO
        if path == t.path:
            calls["n"] += 1
            if calls["n"] == 2:
                orig(path)
                raise OSError(errno.EIO, "EIO", path)
        orig(path)

    fs.fsync_dir = flaky  # type: ignore[method-assign]
    with pytest.raises(lamina.PoisonedTableError):
        s.engine("kv").merge_now()
    fs.fsync_dir = orig  # type: ignore[method-assign]
    for mode in ("process", "power"):
        s2 = open_kv_store("/db", fs=fs.crash_state(mode))
        assert len(s2.engine("kv").query()) == 30, mode
        s2.close()


def test_merge_hands_rows_to_the_rule_by_data_age_not_part_id() -> None:
    def last_wins(rows):  # type: ignore[no-untyped-def]
        ts = rows["ts"]
        return take(rows, np.nonzero(np.r_[ts[1:] != ts[:-1], True])[0])

    eng = attrs.evolve(KV, name="lw", equal_key_rule=last_wins)
    s = lamina.Store("/db", fs=SimFS(), registry=Registry(), engines=[eng], background=False)
    e = s.engine("lw")
    e.write(kv_batch([b"a", b"b"], [T0, T0], [b"old", b"x"]))
    e.flush()
    e.write(kv_batch([b"c", b"d"], [T0, T0], [b"y", b"z"]))
    e.flush()
    e.write(kv_batch([b"a"], [T0], [b"NEW"]))
    gate, entered = threading.Event(), threading.Event()
    orig = table_mod.write_mem_part

    def slow(*a, **k):  # type: ignore[no-untyped-def]
        entered.set()
        gate.wait()
        return orig(*a, **k)

    table_mod.write_mem_part = slow
    try:
        th = threading.Thread(target=e.flush)
        th.start()  # the flush holds part ID 3 ...
        entered.wait()
        e.merge_now()  # ... while parts 1 and 2 (older data) merge into ID 4
        gate.set()
        th.join()
    finally:
        table_mod.write_mem_part = orig
    e.merge_now()
    assert [r[2] for r in e.query() if r[0] == b"a"] == [b"NEW"]
    s.close()


def test_buffered_rows_do_not_alias_the_callers_arrays() -> None:
    s = open_kv_store("/db", fs=SimFS())
    kv = s.engine("kv")
    ts = np.array([T0, T0 + 1], dtype=np.int64)
    kv.write({"key": [b"a", b"b"], "ts": ts, "value": [b"1", b"2"], "tags": [{}, {}]})
    ts[:] = 0  # the application reuses its buffer
    kv.flush()
    assert [r[1] for r in kv.query()] == [T0, T0 + 1]
    s.close()


def test_segment_interval_must_be_whole_minutes() -> None:
    with pytest.raises(ValueError, match="multiple of 60 s"):
        attrs.evolve(KV, segment_interval_ns=90 * 10**9)


def test_writes_after_a_rollback_make_the_store_open_normally_again() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    _parts(s, 2)
    t = s.engine("kv").tables()[0].path
    s.close()
    newest = max(n for n in fs.listdir(t) if n.endswith(".snp"))
    fs.corrupt(f"{t}/{newest}", 3, b"#")
    s = open_kv_store("/db", fs=fs, allow_rollback=True)
    s.engine("kv").write(kv_batch([b"z"], [T0]))
    s.engine("kv").flush()
    s.close()
    s = open_kv_store("/db", fs=fs)  # no allow_rollback needed any more
    assert b"z" in [r[0] for r in s.engine("kv").query()]
    s.close()


def test_part_ids_are_never_reused_after_the_newest_part_is_dropped() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    _parts(s, 2)
    t = s.engine("kv").tables()[0]
    newest = max(h.part_id for h in t.live_parts)
    s.close()
    rmtree(fs, posixpath.join(t.path, names_part(newest), "values.bin"))
    s = open_kv_store("/db", fs=fs)
    (q,) = s.quarantined()
    s.drop_quarantined(q.spec, force=True)
    s.close()
    s = open_kv_store("/db", fs=fs)
    s.engine("kv").write(kv_batch([b"n"], [T0]))
    (pid,) = s.engine("kv").flush()
    assert pid > newest
    s.close()


def names_part(pid: int) -> str:
    from lamina import names

    return names.part_name(pid)


def test_an_observer_hook_failure_never_fails_a_flush() -> None:
    class Broken:
        @lamina.hookimpl
        def lamina_part_committed(self, engine, dataset, table, part, kind, rows):  # type: ignore[no-untyped-def]
            raise RuntimeError("exporter down")

    reg = Registry()
    reg.pm.register(Broken())
    s = lamina.Store("/db", fs=SimFS(), registry=reg, engines=[KV], background=False)
    s.engine("kv").write(kv_batch([b"a"], [T0]))
    assert s.engine("kv").flush()
    s.close()


def test_an_os_error_reading_a_part_quarantines_it_instead_of_failing_open() -> None:
    fs = SimFS()
    s = open_kv_store("/db", fs=fs)
    _parts(s, 2)
    t = s.engine("kv").tables()[0]
    victim = min(h.name for h in t.live_parts)
    s.close()
    meta = posixpath.join(t.path, victim, "metadata.json")
    fs.remove(meta)
    fs.makedirs(meta)  # a directory where the commit record belongs
    s = open_kv_store("/db", fs=fs)
    assert len(s.engine("kv").query()) == 10
    assert s.quarantined()[0].reason["reason"] in ("io_error", "metadata", "missing_file")
    s.close()
