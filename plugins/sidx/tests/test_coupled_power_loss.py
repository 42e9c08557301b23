"""Power loss at every file-system operation of coupled trace+sidx flushes (and of the merges and
the recovery that follow): never a trace part without its index entries, never an index entry
pointing at a trace that is absent, every acknowledged span and entry present exactly once.

The workload runs on SimFS and is cut at operation k, for every k; the disk is rebuilt as a power
loss (only fsynced bytes and directory entries), a torn power loss, or a process kill leaves it,
and also with exactly one pending change omitted (ALICE-style reordering). Reopening must satisfy
SPEC §10 for both engines plus the coupling invariant, and a second open must change nothing.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections import Counter
from typing import Any

import pytest

import lamina
from lamina import names
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.testing import damage as dmg
from lamina.testing.crash import disabled_barrier
from lamina.testing.fixtures import explore_crash_points
from lamina_sidx.plugin import ENGINE as SIDX
from lamina_sidx.traces import IndexedTraces, IndexRule, series_of
from lamina_trace.plugin import ENGINE as TRACE

ROOT = "/db"
T0 = 1_700_000_000_000_000_000
# One index keeps the op count (and test time) down; the transaction code does not depend on how
# many tables take part (test_traces.py covers three).
RULES = [IndexRule("dur", key="duration", series_tag="service")]
Span = tuple[bytes, bytes, int, int]  # trace_id, span_id, timestamp, duration


def _batch(b: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        c: [] for c in ("trace_id", "span_id", "timestamp", "duration", "payload", "tags")
    }
    for t in range(3):
        for s in range(2):
            cols["trace_id"].append(b"t%d-%d" % (b, t) if t else b"shared")  # "shared" spans batches
            cols["span_id"].append(b"b%d-s%d-%d" % (b, t, s))
            cols["timestamp"].append(T0 + b * 1000 + t * 10 + s)
            cols["duration"].append(100 * b + 10 * t + s)
            cols["payload"].append(b"p")
            cols["tags"].append({"service": f"svc-{(t + s) % 2}"})
    return cols


BATCHES = [_batch(b) for b in range(3)]


def _spans(batch: dict[str, list[Any]]) -> list[Span]:
    return list(zip(batch["trace_id"], batch["span_id"], batch["timestamp"], batch["duration"], strict=True))


ALL_SPANS = Counter(s for b in BATCHES for s in _spans(b))


def open_store(fs: SimFS) -> tuple[lamina.Store, IndexedTraces]:
    store = lamina.Store(ROOT, fs=fs, engines=[TRACE, SIDX], background=False)
    return store, IndexedTraces(store, RULES)


def workload(fs: SimFS, acked: list[Span]) -> None:
    """Two coupled flushes, a trace merge, one more coupled flush; acks after flush() returns.
    (Merges are per table and covered by the core's power-loss suite; one here shows they
    interleave with coupled flushes. The sidx merge is left out to keep the op count down.)"""
    store, it = open_store(fs)
    for b in BATCHES[:2]:
        it.write(b)
        it.flush()
        acked.extend(_spans(b))
    store.engine("trace").merge_now()
    it.write(BATCHES[2])
    it.flush()
    acked.extend(_spans(BATCHES[2]))
    store.close()


def check_invariants(fs: SimFS, acked: list[Span], label: str) -> None:
    store, _ = open_store(fs)
    try:
        spans = Counter(
            (s.trace_id, s.span_id, s.timestamp, s.duration) for s in store.engine("trace").query()
        )
        # acknowledged means durable, exactly once; nothing never written
        for s in acked:
            assert spans[s] == 1, f"{label}: acknowledged span {s} seen {spans[s]} times"
        assert all(n == 1 for n in spans.values()), f"{label}: duplicated spans"
        assert set(spans) <= set(ALL_SPANS), f"{label}: spans never written"
        # the coupling: each index holds exactly the entries of the spans present, no more, no less
        sidx = store.engine("sidx")
        dur = Counter((e.data, e.key, e.timestamp, e.series) for e in sidx.query(dataset="default.dur"))
        svc = {(s[0], s[1]): g["service"] for b in BATCHES for s, g in zip(_spans(b), b["tags"], strict=True)}
        want_dur = Counter((t, d, ts, series_of(svc[(t, sid)])) for t, sid, ts, d in spans)
        assert dur == want_dur, f"{label}: duration index {dur} != spans present {want_dur}"
        # no part is torn, none was quarantined: a crash alone never makes corruption
        assert store.metrics.value("lamina_corrupt_parts_total") == 0, f"{label}: quarantined a part"
        for h in (store.engine("trace"), sidx):
            for t in h.tables():
                live = {p.name for p in t.live_parts}
                for p in t.live_parts:
                    p.reader.verify_all()
                for n in fs.listdir(t.path):  # only listed parts and recent manifests remain
                    e = names.parse_manifest_name(n)
                    assert n in live or (e is not None and e >= t.epoch - 1), (
                        f"{label}: debris {n} in {t.path}"
                    )
        txn_dir = posixpath.join(ROOT, names.TXN_DIR)
        assert not fs.is_dir(txn_dir) or fs.listdir(txn_dir) == [], f"{label}: intent left behind"
    finally:
        store.close()
    store2, _ = open_store(fs)
    try:
        again = Counter(
            (s.trace_id, s.span_id, s.timestamp, s.duration) for s in store2.engine("trace").query()
        )
        assert again == spans, f"{label}: second recovery changed the spans"
        assert len(store2.engine("sidx").query(dataset="default.dur")) == sum(spans.values())
    finally:
        store2.close()


def _op_count() -> int:
    fs = SimFS()
    workload(fs, [])
    return fs.op_count


@pytest.mark.parametrize(("mode", "step"), [("power", 1), ("process", 3), ("torn", 5), ("kill", 2)])
def test_crash_at_every_operation_of_coupled_flushes_keeps_trace_and_index_together(
    mode: str, step: int
) -> None:
    """Every operation for power loss (the strictest state); every third for a process kill and
    every fifth for torn appends (they differ from power loss only where changes are pending),
    to keep the suite's time modest. "kill" (every second op): a kill, the recovery on its page
    cache, and a power cut at each step of that recovery and after it."""
    total = _op_count()
    assert total > 150  # three coupled flushes and a merge really happen
    assert explore_crash_points(workload, check_invariants, (mode,), stride=step) > 30


def test_every_single_omitted_pending_operation_is_survivable() -> None:
    total = _op_count()
    checked = 0
    for k in range(0, total, 12):
        fs = SimFS()
        fs.crash_at(k)
        acked: list[Span] = []
        with pytest.raises(SimulatedCrash):
            workload(fs, acked)
        for desc, state in fs.omission_states():
            check_invariants(state, acked, f"crash at op {k}, omitted {desc}")
            checked += 1
    assert checked > 25


def _kill_after(first_rename: str) -> int:
    """The op right after the first rename whose target contains `first_rename` and that
    follows the first intent's rename: a kill there leaves that rename in the page cache only."""
    full = SimFS()
    workload(full, [])
    intent = next(op.index for op in full.ops if op.op == "replace" and "/txn/" in op.detail)
    return next(op.index for op in full.ops[intent:] if op.op == "replace" and first_rename in op.detail) + 1


#: Kill points whose recovery read page-cache-only state and acted on it, and the barrier that
#: makes it durable first: the intent itself (rolled forward into one member, then lost to the
#: power cut), and a member manifest already listing the part (the intent removed on its word).
KILL_POINTS = {
    "intent-renamed": ("/txn/", "dir@txn.py:recover"),
    "manifest-renamed": (".snp", "dir@txn.py:_settle"),
}


@pytest.mark.parametrize("case", sorted(KILL_POINTS))
def test_a_power_cut_after_a_kill_never_splits_a_transaction_its_recovery_completed(case: str) -> None:
    """Kill, recover on the page cache, cut the power before each recovery op and after it: the
    transaction stays whole. Without the barrier the recovery added for it, it splits."""
    needle, site = KILL_POINTS[case]
    k = _kill_after(needle)
    assert explore_crash_points(workload, check_invariants, ("kill",), start=k, stride=10**9) >= 4
    with disabled_barrier(site), pytest.raises(AssertionError, match=r"index|spans"):
        explore_crash_points(workload, check_invariants, ("kill",), start=k, stride=10**9)


def _crashed_after_intent() -> tuple[SimFS, list[Span]]:
    """The page cache as a process kill leaves it right after the second flush's intent was
    renamed into place: the transaction is committed, but no table lists its part yet."""
    full = SimFS()
    workload(full, [])
    renames = [op.index for op in full.ops if op.op == "replace" and "/txn/" in op.detail]
    assert len(renames) == 3  # one intent per coupled flush
    fs = SimFS()
    fs.crash_at(renames[1] + 1)
    acked: list[Span] = []
    with pytest.raises(SimulatedCrash):
        workload(fs, acked)
    state = fs.crash_state("process")
    assert [n for n in state.listdir(posixpath.join(ROOT, names.TXN_DIR)) if n.endswith(".intent")]
    return state, acked


def test_recovery_rolls_a_committed_transaction_forward() -> None:
    state, acked = _crashed_after_intent()
    # the second batch was not acknowledged (flush() had not returned), yet it is committed
    assert len(acked) == len(_spans(BATCHES[0]))
    check_invariants(state, acked + _spans(BATCHES[1]), "rolled forward")


def test_crash_at_every_step_of_recovery_is_safe() -> None:
    first, acked = _crashed_after_intent()
    probe = first.crash_state("process")
    open_store(probe)[0].close()
    n = probe.op_count
    assert n >= 4  # two manifests, the intent's removal, its directory's fsync
    for k in range(n + 1):
        fs = first.crash_state("process")
        fs.crash_at(k)
        with contextlib.suppress(SimulatedCrash):
            open_store(fs)[0].close()
        check_invariants(fs.crash_state("power"), acked + _spans(BATCHES[1]), f"recovery crash at op {k}")


def test_a_damaged_intent_stops_the_open_before_anything_is_removed() -> None:
    state, _ = _crashed_after_intent()
    txn_dir = posixpath.join(ROOT, names.TXN_DIR)
    (intent,) = [n for n in state.listdir(txn_dir) if n.endswith(".intent")]
    path = posixpath.join(txn_dir, intent)
    dmg.flip_bit(state, path, len(state.read_file(path)) // 2, bit=5)  # bit rot, outside Lamina
    before = sorted(state.listdir(posixpath.join(ROOT, "sidx/default.dur/seg-20231114/shard-0")))
    from lamina.txn import CorruptIntentError

    with pytest.raises(CorruptIntentError, match=intent):
        open_store(state)
    assert sorted(state.listdir(posixpath.join(ROOT, "sidx/default.dur/seg-20231114/shard-0"))) == before


def test_a_failed_part_write_commits_nothing_and_a_retry_commits_everything() -> None:
    import errno

    fs = SimFS()
    store, it = open_store(fs)
    try:
        it.write(BATCHES[0])
        fault = fs.inject("write", f"{ROOT}/sidx/*/data.bin", errno.ENOSPC)
        with pytest.raises(OSError):
            it.flush()
        assert fault.fired == 1
        # nothing committed in either engine, nothing lost: the rows are buffered again
        for h in (store.engine("trace"), store.engine("sidx")):
            assert all(not t.live_parts and t.pending_rows for t in h.tables())
        assert (
            not fs.listdir(posixpath.join(ROOT, names.TXN_DIR))
            if fs.is_dir(posixpath.join(ROOT, names.TXN_DIR))
            else True
        )
        assert len(it.flush()) == 2
        assert sorted(s.span_id for s in store.engine("trace").query()) == sorted(BATCHES[0]["span_id"])
        assert len(store.engine("sidx").query(dataset="default.dur")) == len(BATCHES[0]["span_id"])
    finally:
        store.close()


def test_a_failed_manifest_fsync_after_the_intent_poisons_and_reopen_completes() -> None:
    import errno

    fs = SimFS()
    _, it = open_store(fs)
    it.write(BATCHES[0])
    fault = fs.inject("fsync", f"{ROOT}/trace/*.snp.tmp", errno.EIO)
    with pytest.raises(lamina.PoisonedTableError):
        it.flush()
    assert fault.fired
    with pytest.raises(lamina.PoisonedTableError):
        it.flush()  # no commit until reopen (SPEC §4: a failed fsync poisons)
    # the process stops here (a crash state has no locks): the next open completes the transaction
    check_invariants(fs.crash_state("process"), _spans(BATCHES[0]), "reopened after a failed manifest")


def test_a_clean_manifest_failure_after_the_intent_is_completed_by_the_next_flush() -> None:
    """EIO on the manifest's rename: no manifest was written, so nothing is poisoned; the
    transaction (durable: its intent) is completed by the next flush, no reopen needed."""
    import errno

    fs = SimFS()
    _, it = open_store(fs)
    it.write(BATCHES[0])
    fs.inject("replace", f"{ROOT}/trace/*.snp", errno.EIO)
    with pytest.raises(OSError):
        it.flush()
    it.flush()
    assert fs.listdir(posixpath.join(ROOT, names.TXN_DIR)) == []
    check_invariants(fs.crash_state("power"), _spans(BATCHES[0]), "after the retried flush")


def test_check_reports_an_interrupted_transaction_and_changes_nothing() -> None:
    from lamina.check import Kind, check_store
    from lamina.plugins import Registry

    state, _ = _crashed_after_intent()
    reg = Registry()
    reg._add_engine(TRACE, "<test>")
    reg._add_engine(SIDX, "<test>")
    before = state.listdir(posixpath.join(ROOT, names.TXN_DIR))
    report = check_store(ROOT, fs=state, registry=reg)
    pending = [p for p in report.problems if p.kind is Kind.PENDING_TRANSACTION]
    assert len(pending) == 1 and not pending[0].is_damage
    assert "sidx/default.dur/seg-20231114/shard-0/" in pending[0].detail
    assert state.listdir(posixpath.join(ROOT, names.TXN_DIR)) == before  # check is read-only
