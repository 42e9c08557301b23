"""Power loss at every file-system operation of flush and merge (SPEC §10 invariants 1, 2, 6, 7).

The workload runs on SimFS and is cut at operation k, for every k. From each cut we build the disk
as a power loss leaves it (only fsynced bytes and directory entries survive), a torn variant
(unsynced appends cut at 512 B sectors, sometimes zero-filled) and a process kill (page cache
survives). Reopening must show every acknowledged row exactly once, nothing never written, only
valid parts, no debris, and never a quarantined part: a crash alone must not produce corruption.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

import pytest

from lamina import names
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.testing.fixtures import explore_crash_points
from lamina.testing.kv import kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000

Row = tuple[bytes, int, bytes, dict]


def _rows(batch: dict) -> list[Row]:
    return [
        (k, t, v, g)
        for k, t, v, g in zip(batch["key"], batch["ts"], batch["value"], batch["tags"], strict=True)
    ]


BATCHES = [
    kv_batch([b"a", b"b", b"c"], [T0 + 1, T0 + 2, T0 + 3]),
    kv_batch([b"b", b"d"], [T0 + 4, T0 + 5]),
    kv_batch([b"a", b"e", b"f"], [T0 + 6, T0 + 7, T0 + 8]),
    kv_batch([b"c", b"g"], [T0 + 9, T0 + 10]),
]


def workload(fs: SimFS, acked: list[Row]) -> None:
    """Three flushes, a merge of the three parts, one more flush; acks after flush() returns."""
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    for b in BATCHES[:3]:
        kv.write(b)
        kv.flush()
        acked.extend(_rows(b))
    kv.merge_now()
    kv.write(BATCHES[3])
    kv.flush()
    acked.extend(_rows(BATCHES[3]))
    s.close()


ALL_ROWS = sorted(r[:3] for b in BATCHES for r in _rows(b))


def count_ops(run: Callable[[SimFS, list[Row]], None]) -> int:
    fs = SimFS()
    run(fs, [])
    return fs.op_count


def check_invariants(fs: SimFS, acked: list[Row], label: str) -> None:
    s = open_kv_store(ROOT, fs=fs)
    try:
        kv = s.engine("kv")
        rows = [r[:3] for r in kv.query()]
        # 1. acknowledged means durable, exactly once; nothing that was never written appears
        for r in acked:
            assert rows.count(r[:3]) == 1, f"{label}: acknowledged row {r[:3]} seen {rows.count(r[:3])} times"
        assert len(rows) == len(set(rows)), f"{label}: duplicated rows {rows}"
        assert set(rows) <= set(ALL_ROWS), f"{label}: rows never written: {set(rows) - set(ALL_ROWS)}"
        # 2. every visible part validates completely
        for t in kv.tables():
            for h in t.live_parts:
                h.reader.verify_all()
        # 3. a crash alone never produces a quarantined part
        assert s.metrics.value("lamina_corrupt_parts_total") == 0, f"{label}: quarantined a part"
        # 6. after recovery: only listed parts, the latest manifests (and corrupt/) remain
        for t in kv.tables():
            listing = fs.listdir(t.path)
            live = {h.name for h in t.live_parts}
            for n in listing:
                if names.parse_manifest_name(n) is not None:
                    assert names.parse_manifest_name(n) >= t.epoch - 1, f"{label}: stale manifest {n}"
                else:
                    assert n in live, f"{label}: debris {n} left in {t.path}"
            for h in t.live_parts:
                assert not any(x.endswith(".tmp") for x in fs.listdir(posixpath.join(t.path, h.name)))
    finally:
        s.close()
    # 7. recovery is idempotent: a second open sees the same rows
    s2 = open_kv_store(ROOT, fs=fs)
    try:
        again = [r[:3] for r in s2.engine("kv").query()]
        assert again == rows, f"{label}: second recovery changed the rows"
    finally:
        s2.close()


@pytest.mark.parametrize("mode", ["power", "torn", "process"])
def test_crash_at_every_operation_of_flush_and_merge_keeps_acknowledged_rows(mode: str) -> None:
    total = count_ops(workload)
    assert total > 100  # the workload really does flushes and a merge
    assert explore_crash_points(workload, check_invariants, (mode,)) == total


def test_every_single_omitted_pending_operation_is_survivable() -> None:
    """ALICE-style: from each cut, drop exactly one not-yet-durable change (a reordering the
    kernel may perform) and reopen."""
    total = count_ops(workload)
    checked = 0
    for k in range(0, total, 3):
        fs = SimFS()
        fs.crash_at(k)
        acked: list[Row] = []
        with pytest.raises(SimulatedCrash):
            workload(fs, acked)
        for desc, state in fs.omission_states():
            check_invariants(state, acked, f"crash at op {k}, omitted {desc}")
            checked += 1
    assert checked > 50


def test_crash_during_recovery_is_safe() -> None:
    """Compound failure: crash mid-merge, then crash at every step of the recovery that follows."""
    full = SimFS()
    workload(full, [])
    last_mkdir = max(op.index for op in full.ops if op.op == "mkdir")
    base = SimFS()
    base.crash_at(last_mkdir + 8)  # the last flush's part is half written: recovery has debris
    acked: list[Row] = []
    with pytest.raises(SimulatedCrash):
        workload(base, acked)
    first = base.crash_state("process")  # the page cache kept the half-written part: more debris

    def recover(fs: SimFS, _: list[Row]) -> None:
        open_kv_store(ROOT, fs=fs).close()

    probe = first.crash_state("process")
    recover(probe, [])
    n = probe.op_count
    assert n >= 3  # recovery really had work to do (unlink the half-written part's files, rmdir)
    for k in range(n + 1):
        fs = first.crash_state("process")
        fs.crash_at(k)
        try:
            recover(fs, [])
            state = fs.crash_state("power")
        except SimulatedCrash:
            state = fs.crash_state("power")
        check_invariants(state, acked, f"recovery crash at op {k}")


def test_a_table_left_half_created_by_a_killed_process_is_made_durable_before_its_first_commit() -> None:
    """Found by review (issue 7). A process killed while creating a table leaves its directories
    in the page cache, visible but with entries not yet durable (SimFS's "process" crash state
    cannot show this: it keeps everything). The next process sees the path exist; if it only
    made a *missing* path durable, its acknowledged flush would live in a directory that a later
    power loss removes. The first commit of each open makes the whole path durable first."""
    probe = SimFS()
    s = open_kv_store(ROOT, fs=probe)
    s.engine("kv").write(kv_batch([b"probe"], [T0]))
    table_path = s.engine("kv").tables()[0].path
    s.close()

    fs = SimFS()
    level = ""
    for name in table_path.strip("/").split("/"):  # the killed process got this far: every
        level += "/" + name  # level created (mkdir is an op: its entry stays pending), none synced
        fs.mkdir(level)
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a", b"b"], [T0, T0 + 1]))
    kv.flush()  # acknowledged
    after = open_kv_store(ROOT, fs=fs.crash_state("power"))
    assert [r[0] for r in after.engine("kv").query()] == [b"a", b"b"]
    after.close()
