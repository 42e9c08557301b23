"""Multi-table transactions (lamina/txn.py) on the reference kv engine: two datasets coupled into
one flush group are always committed together, across a power cut at any operation."""

from __future__ import annotations

import posixpath

import pytest

import lamina
from lamina import names
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.testing.kv import kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9
MEMBERS = [("kv", "a"), ("kv", "b")]
# the second batch spans two segments: four tables take part in its transaction
BATCHES = [
    kv_batch([b"k1", b"k2"], [T0 + 1, T0 + 2]),
    kv_batch([b"k3", b"k4"], [T0 + 3, T0 + DAY + 4]),
]


def _write_both(store: lamina.Store, batch: dict) -> None:
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    with group.lock:
        kv.write(batch, dataset="a")
        kv.write(batch, dataset="b")


def workload(fs: SimFS, acked: list[tuple[bytes, int]]) -> None:
    store = open_kv_store(ROOT, fs=fs)
    for b in BATCHES:
        _write_both(store, b)
        store.engine("kv").flush()  # flushes the whole group
        acked.extend(zip(b["key"], b["ts"], strict=True))
    store.close()


def _rows(store: lamina.Store, dataset: str) -> list[tuple[bytes, int]]:
    return [(k, t) for k, t, _, _ in store.engine("kv").query(dataset=dataset)]


def check(fs: SimFS, acked: list[tuple[bytes, int]], label: str) -> None:
    store = open_kv_store(ROOT, fs=fs)
    try:
        a, b = _rows(store, "a"), _rows(store, "b")
        assert a == b, f"{label}: coupled datasets differ: {a} vs {b}"
        assert set(acked) <= set(a) and len(a) == len(set(a)), f"{label}: lost or duplicated {acked} / {a}"
        txn_dir = posixpath.join(ROOT, names.TXN_DIR)
        assert not fs.is_dir(txn_dir) or not fs.listdir(txn_dir), f"{label}: intent left"
    finally:
        store.close()


@pytest.mark.parametrize(("mode", "step"), [("power", 1), ("process", 2)])
def test_coupled_datasets_commit_together_at_every_crash_point(mode: str, step: int) -> None:
    """Every operation for power loss; every second one for a process kill (whose state differs
    from the power-loss one only where changes are still pending)."""
    probe = SimFS()
    workload(probe, [])
    assert any("/txn/" in op.detail for op in probe.ops if op.op == "replace")
    for k in range(0, probe.op_count, step):
        fs = SimFS()
        fs.crash_at(k)
        acked: list[tuple[bytes, int]] = []
        with pytest.raises(SimulatedCrash):
            workload(fs, acked)
        check(fs.crash_state(mode), acked, f"{mode} crash at op {k} ({fs.ops[-1] if fs.ops else 'start'})")


def test_a_group_needs_two_members_and_a_dataset_joins_one_group() -> None:
    store = open_kv_store(ROOT, fs=SimFS())
    try:
        with pytest.raises(lamina.InvalidInputError):
            store.couple([("kv", "a")])
        g = store.couple(MEMBERS)
        assert store.couple(list(reversed(MEMBERS))) is g
        with pytest.raises(lamina.InvalidInputError):
            store.couple([("kv", "a"), ("kv", "c")])
        with pytest.raises(lamina.UnknownEngineError):
            store.couple([("nope", "a"), ("kv", "z")])
    finally:
        store.close()


def test_a_member_flush_flushes_the_group_and_leaves_no_intent() -> None:
    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    try:
        _write_both(store, BATCHES[0])
        pids = store.engine("kv").flush()
        assert len(pids) == 2
        assert _rows(store, "a") == _rows(store, "b") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]
        assert fs.listdir(posixpath.join(ROOT, names.TXN_DIR)) == []
    finally:
        store.close()


def test_flushes_of_a_group_are_counted_with_or_without_an_intent() -> None:
    store = open_kv_store(ROOT, fs=SimFS())
    try:
        group = store.couple(MEMBERS)
        kv = store.engine("kv")
        kv.write(BATCHES[0], dataset="a")  # one member only: committed without an intent
        assert len(group.flush()) == 1
        assert store.metrics.value("lamina_flushes_total") == 1
        _write_both(store, BATCHES[0])
        assert len(group.flush()) == 2
        assert store.metrics.value("lamina_flushes_total") == 3
    finally:
        store.close()


@pytest.mark.parametrize("how", ["poisoned", "closed"])
def test_a_member_turning_unwritable_during_the_take_strands_no_rows(how: str) -> None:
    """A member poisoned (a concurrent merge's failed fsync) or closed (retention) between the
    group's writability check and its buffer take: the buffers already taken go back, so the rows
    stay pending and a later flush writes them (they were stranded on the flushing list, then
    dropped by close)."""
    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    _write_both(store, BATCHES[0])
    ta, tb = kv.tables("a")[0], kv.tables("b")[0]
    orig = tb.take_buffer

    def racy() -> object:
        if how == "poisoned":
            tb.poison(OSError(5, "EIO from a concurrent merge's fsync"))
        else:
            with kv._lock:  # what retention does to b's segment
                kv._tables.pop(("b", tb.segment_start), None)
            tb.close()
        return orig()

    tb.take_buffer = racy  # type: ignore[method-assign]
    with pytest.raises(lamina.LaminaError):
        group.flush()
    assert ta.pending_rows == 2 and not ta._flushing
    assert ta.flush() is not None
    assert _rows(store, "a") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]
    store._closed = True  # b cannot be flushed any more: stop without the final flush
    for h in store._handles.values():
        h.close()
    store._lock.release()
    reopened = open_kv_store(ROOT, fs=fs.crash_state("power"))
    try:
        assert _rows(reopened, "a") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]
    finally:
        reopened.close()


def test_a_writer_flushing_under_the_group_lock_does_not_deadlock_a_background_flush() -> None:
    """`with group.lock: write(); group.flush()` against a concurrent group flush (the background
    thread): both must finish (a private flush lock taken before `group.lock` deadlocked)."""
    import threading
    import time

    store = open_kv_store(ROOT, fs=SimFS())
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    started = threading.Event()

    def writer() -> None:
        with group.lock:
            kv.write(BATCHES[0], dataset="a")
            kv.write(BATCHES[0], dataset="b")
            started.set()
            time.sleep(0.3)  # meanwhile the background flush starts and waits
            group.flush()

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    started.wait(5)
    bg = threading.Thread(target=group.flush, daemon=True)
    bg.start()
    w.join(10)
    bg.join(10)
    assert not w.is_alive() and not bg.is_alive(), "deadlock"
    assert _rows(store, "a") == _rows(store, "b") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]
    store.close()


def test_a_clean_manifest_failure_after_the_intent_is_retried_not_poisoned() -> None:
    """ENOSPC on one member's manifest tmp after the intent is durable: nothing was written, so
    the table is not poisoned (SPEC §4); the members that committed are counted; the group's next
    flush completes the transaction and removes the intent, and the data survives a power cut."""
    import errno

    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    _write_both(store, BATCHES[0])
    fault = fs.inject("write", f"{ROOT}/kv/b/*.snp.tmp", errno.ENOSPC, once=False)
    with pytest.raises(OSError, match="No space"):
        group.flush()
    assert fault.fired
    tb = kv.tables("b")[0]
    assert not tb.poisoned and not kv.tables("a")[0].poisoned
    assert store.metrics.value("lamina_flushes_total") == 1  # a committed
    assert _rows(store, "b") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]  # still visible from memory
    fault.cancel()
    assert len(group.flush()) == 1  # finishes b's part of the transaction
    assert store.metrics.value("lamina_flushes_total") == 2
    assert fs.listdir(posixpath.join(ROOT, names.TXN_DIR)) == []
    _write_both(store, BATCHES[1])
    assert len(group.flush()) == 4
    check(
        fs.crash_state("power"),
        [(b"k1", T0 + 1), (b"k2", T0 + 2), *zip(BATCHES[1]["key"], BATCHES[1]["ts"], strict=True)],
        "",
    )
    store.close()


def _interrupted_after_intent(fs: SimFS) -> SimFS:
    """A power cut after the intent of a group flush, before b's manifest (ENOSPC there first)."""
    import errno

    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    _write_both(store, BATCHES[0])
    fs.inject("write", f"{ROOT}/kv/b/*.snp.tmp", errno.ENOSPC, once=False)
    with pytest.raises(OSError):
        group.flush()
    return fs.crash_state("power")


@pytest.mark.parametrize("allow_rollback", [False, True])
def test_a_damaged_member_manifest_keeps_the_intent_and_repair_completes_it(allow_rollback: bool) -> None:
    """The intent names a part of a table whose newest manifest is damaged: recovery cannot roll
    it forward, so it keeps the intent and refuses to open (even with rollback allowed, which
    would remove that part as a leftover while the other member keeps its own). After `lamina
    repair` the next open completes the transaction."""
    from lamina.repair import repair_store
    from lamina.testing.kv import KV

    fs = _interrupted_after_intent(SimFS())
    txn_dir = posixpath.join(ROOT, names.TXN_DIR)
    (intent,) = fs.listdir(txn_dir)
    tdir = posixpath.join(
        ROOT, "kv", "b", fs.listdir(posixpath.join(ROOT, "kv", "b"))[0], names.shard_name(0)
    )
    newest = max(n for n in fs.listdir(tdir) if names.parse_manifest_name(n) is not None)
    fs.remove(posixpath.join(tdir, newest))  # damage from outside Lamina
    f = fs.create(posixpath.join(tdir, newest))
    f.write(b"garbage")
    f.close()
    with pytest.raises(lamina.CorruptManifestError, match="repair"):
        open_kv_store(ROOT, fs=fs, allow_rollback=allow_rollback)
    assert fs.listdir(txn_dir) == [intent]
    assert any(names.parse_part_name(n) is not None for n in fs.listdir(tdir))  # the part is kept
    reg = lamina.plugins.Registry()
    reg._add_engine(KV, "<test>")
    repair_store(ROOT, fs=fs, registry=reg)
    check(fs, [(b"k1", T0 + 1), (b"k2", T0 + 2)], "after repair")


def test_a_failed_fsync_removing_the_intent_poisons_the_members() -> None:
    """The flush is complete, but the intent's removal may not survive a crash (SPEC §4: a
    failed fsync poisons): no member commits again until the store is reopened."""
    import errno

    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    _write_both(store, BATCHES[0])
    faults = []
    remove = fs.remove

    def remove_then_fail_fsync(path: str) -> None:
        remove(path)
        if path.endswith(".intent"):
            faults.append(fs.inject("fsync_dir", f"{ROOT}/{names.TXN_DIR}", errno.EIO))

    fs.remove = remove_then_fail_fsync  # type: ignore[method-assign]
    assert len(group.flush()) == 2
    assert faults and faults[0].fired
    assert all(t.poisoned for t in kv.tables("a") + kv.tables("b"))
    fs.remove = remove  # type: ignore[method-assign]
    with pytest.raises(lamina.PoisonedTableError):
        kv.write(BATCHES[1], dataset="a")
    check(fs.crash_state("power"), [(b"k1", T0 + 1), (b"k2", T0 + 2)], "after poison")


def test_a_stale_intent_does_not_resurrect_a_reused_part_id() -> None:
    """An intent whose removal was lost, then retention drops b's segment and a write re-creates
    it (part IDs restart): the next open must not make the re-created table's uncommitted part
    with the same ID live."""
    import errno

    from lamina.io.durable import rmtree

    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    _write_both(store, BATCHES[0])
    fs.inject("remove", f"{ROOT}/{names.TXN_DIR}/*.intent", errno.EIO)  # only logged: intent stays
    assert len(group.flush()) == 2
    assert len(fs.listdir(posixpath.join(ROOT, names.TXN_DIR))) == 1
    tb = kv.tables("b")[0]
    with kv._lock:  # what retention does to b's segment
        kv._tables.pop(("b", tb.segment_start), None)
    tb.close()
    rmtree(fs, posixpath.dirname(tb.path))
    kv.write(kv_batch([b"zz"], [T0 + 9]), dataset="b")  # re-creates the segment
    tb2 = kv.tables("b")[0]
    tb2.write_flush(tb2.take_buffer())  # part 1 published, never committed: then power loss
    reopened = open_kv_store(ROOT, fs=fs.crash_state("power"))
    try:
        assert _rows(reopened, "b") == []
        assert _rows(reopened, "a") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]
    finally:
        reopened.close()


@pytest.mark.parametrize("crash", ["process", "power"])
def test_a_pending_intent_never_rolls_forward_a_part_that_was_merged_since(crash: str) -> None:
    """Found by review (issue 7): a's part of a transaction is committed, b's manifest fails
    cleanly (the intent stays pending), and a merges that part away. Its directory can outlive
    the merge: a query still held it when the process died, or a power loss undid its removal
    (cleanup takes no barrier). Recovery used to see the directory, roll the part forward next to
    the merge output, and serve its rows twice; it must recognise the part as merged away."""
    import errno

    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    first, second = kv_batch([b"k1"], [T0 + 1]), kv_batch([b"k2"], [T0 + 2])  # one segment
    _write_both(store, first)
    group.flush()
    fault = fs.inject("create", f"{ROOT}/kv/b/*.snp.tmp", errno.ENOSPC)
    _write_both(store, second)
    with pytest.raises(OSError, match="No space"):
        group.flush()
    assert fault.fired and fs.listdir(posixpath.join(ROOT, names.TXN_DIR))  # pending
    table_a = kv.tables("a")[0]
    held = table_a.snapshot(include_memory=False) if crash == "process" else None
    assert kv.merge_now() >= 1
    assert len(kv.tables("a")[0].snapshot(include_memory=False).parts) == 1  # merged
    state = fs.crash_state(crash)
    rows_a = [(b"k1", T0 + 1), (b"k2", T0 + 2)]
    again = open_kv_store(ROOT, fs=state)
    assert _rows(again, "a") == rows_a  # each row once
    assert _rows(again, "b") == rows_a  # and b's half of the transaction completed
    assert state.listdir(posixpath.join(ROOT, names.TXN_DIR)) == []
    again.close()
    del held


@pytest.mark.parametrize("err", ["EMFILE", "EACCES", "EIO"])
def test_an_environment_error_while_judging_a_pending_intent_fails_the_open_and_serves_nothing_twice(
    err: str,
) -> None:
    """Found by review (issue 13): `_merged_away` took any OSError reading a merged part's
    metadata for "not merged", and rolled the retired input forward beside its merge output."""
    import errno

    from lamina.errors import EnvironmentIOError

    fs = SimFS()
    store = open_kv_store(ROOT, fs=fs)
    group = store.couple(MEMBERS)
    kv = store.engine("kv")
    _write_both(store, kv_batch([b"k1"], [T0 + 1]))
    group.flush()
    fs.inject("create", f"{ROOT}/kv/b/*.snp.tmp", errno.ENOSPC)
    _write_both(store, kv_batch([b"k2"], [T0 + 2]))
    with pytest.raises(OSError, match="No space"):
        group.flush()
    held = kv.tables("a")[0].snapshot(include_memory=False)  # keeps the merged input's directory
    assert kv.merge_now() >= 1
    state = fs.crash_state("process")
    merged = [n for n in state.listdir(kv.tables("a")[0].path) if names.parse_part_name(n) is not None][-1]
    code = getattr(errno, err)
    state.inject("read_file", f"{ROOT}/kv/a/*/shard-0/{merged}/metadata.json", code, once=False)
    with pytest.raises(EnvironmentIOError) as info:
        open_kv_store(ROOT, fs=state)
    assert info.value.errno == code
    state.clear_faults()
    again = open_kv_store(ROOT, fs=state)
    assert _rows(again, "a") == [(b"k1", T0 + 1), (b"k2", T0 + 2)]  # each row once
    again.close()
    held.release()
