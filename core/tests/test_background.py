"""The background thread: flush by age and by size, merge by policy, survive failures."""

from __future__ import annotations

import errno
import time

import attrs

import lamina
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing.kv import KV, kv_batch

T0 = 1_700_000_000_000_000_000


def _wait(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_buffer_is_flushed_once_older_than_the_flush_interval() -> None:
    s = lamina.Store("/db", fs=SimFS(), registry=Registry(), engines=[KV], flush_interval_s=0.1)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a"], [T0]))
    t = kv.tables()[0]
    assert t.pending_rows == 1
    assert _wait(lambda: t.pending_rows == 0 and len(t.live_parts) == 1)
    s.close()


def test_buffer_is_flushed_when_it_reaches_flush_rows() -> None:
    eng = attrs.evolve(KV, flush_rows=10)
    s = lamina.Store("/db", fs=SimFS(), registry=Registry(), engines=[eng], flush_interval_s=3600)
    kv = s.engine("kv")
    kv.write(kv_batch([b"k%d" % i for i in range(10)], [T0 + i for i in range(10)]))
    assert _wait(lambda: kv.tables()[0].pending_rows == 0)
    s.close()


def test_background_merges_follow_the_policy() -> None:
    s = lamina.Store("/db", fs=SimFS(), registry=Registry(), engines=[KV], merge_interval_s=0.05)
    kv = s.engine("kv")
    for i in range(4):  # kv's policy merges 2+ similar parts (max_parts=4)
        kv.write(kv_batch([b"k%d" % i], [T0 + i]))
        kv.flush()
    t = kv.tables()[0]
    assert _wait(lambda: len(t.live_parts) == 1)
    assert sorted(r[0] for r in kv.query()) == [b"k0", b"k1", b"k2", b"k3"]
    assert s.metrics.value("lamina_merges_total") >= 1
    s.close()


def test_a_failing_background_flush_backs_off_and_recovers() -> None:
    fs = SimFS()
    s = lamina.Store("/db", fs=fs, registry=Registry(), engines=[KV], flush_interval_s=0.05)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a"], [T0]))
    t = kv.tables()[0]
    fault = fs.inject("write", "*/values.bin", errno.ENOSPC, once=False)
    assert _wait(lambda: s.metrics.value("lamina_flush_errors_total") >= 1)
    assert t.pending_rows == 1 and s._thread is not None and s._thread.is_alive()
    fault.cancel()
    assert _wait(lambda: t.pending_rows == 0, timeout=15)  # after the 1 s backoff
    assert [r[0] for r in kv.query()] == [b"a"]
    s.close()
