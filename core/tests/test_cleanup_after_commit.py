"""What happens after the commit point is cleanup: pruning the old manifest, removing retired
merge inputs, finishing a half-dropped segment. SPEC §4 fsyncs an unlink only when its result must
survive, and none of these must: the barrier-mutation test removed each of their directory fsyncs
in turn and no crash state could tell (tests/crash/test_barrier_mutation.py). So they take no
barrier. These tests pin the two promises that replace it: a failed cleanup never fails (or
poisons) a commit that stands, and cleanup that a power loss undoes is redone by the next open.

History: issue 7's I/O-error sweep first found that a failed fsync here was only logged, and made
it poison the table; the mutation score then showed the barrier itself was never needed.
"""

from __future__ import annotations

import errno

import lamina
from lamina import names
from lamina.io.sim import SimFS
from lamina.testing.kv import kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000


def _flushed_store(fs: SimFS, keys: list[bytes]) -> tuple[lamina.Store, lamina.EngineHandle]:
    s = open_kv_store("/db", fs=fs)
    kv = s.engine("kv")
    for i, k in enumerate(keys):
        kv.write(kv_batch([k], [T0 + i]))
        kv.flush()
    return s, kv


def test_cleanup_after_a_commit_issues_no_barrier() -> None:
    fs = SimFS()
    s, kv = _flushed_store(fs, [b"a", b"b"])
    start = len(fs.ops)
    assert kv.merge_now() == 1
    ops = [(o.op, o.path, o.detail) for o in fs.ops[start:]]
    table = kv.tables()[0].path
    commit = max(i for i, (op, _src, dst) in enumerate(ops) if op == "replace" and dst.endswith(".snp"))
    after = ops[commit + 1 :]
    assert after[0][:2] == ("fsync_dir", table), after  # the commit point's own barrier
    assert [op for op, *_ in after].count("rmdir") == 2, after  # both inputs were removed...
    assert all(op != "fsync_dir" for op, *_ in after[1:]), after  # ...with no barrier after it
    s.close()


def test_a_failing_cleanup_neither_fails_nor_poisons_the_commit() -> None:
    fs = SimFS()
    s, kv = _flushed_store(fs, [b"a"])
    fault = fs.inject("remove", "*.snp", errno.EIO)  # pruning the old manifest fails
    kv.write(kv_batch([b"b"], [T0 + 1]))
    kv.flush()  # committed: acknowledged
    assert fault.fired == 1
    assert not any(t.poisoned for t in kv.tables())
    kv.write(kv_batch([b"c"], [T0 + 2]))  # still writable
    kv.flush()
    assert [r[0] for r in kv.query()] == [b"a", b"b", b"c"]
    s.close()


def test_cleanup_undone_by_a_power_loss_is_redone_by_the_next_open() -> None:
    fs = SimFS()
    s, kv = _flushed_store(fs, [b"a", b"b", b"c"])
    assert kv.merge_now() == 1
    table = kv.tables()[0].path
    s.close()
    lost = fs.crash_state("power")  # every unlink since the merge's commit point is undone
    back = [n for n in lost.listdir(table) if names.parse_part_name(n) is not None]
    assert len(back) == 4, back  # the three retired inputs are back, beside the merged part
    again = open_kv_store("/db", fs=lost)
    assert [r[0] for r in again.engine("kv").query()] == [b"a", b"b", b"c"]
    parts = [n for n in lost.listdir(table) if names.parse_part_name(n) is not None]
    manifests = [n for n in lost.listdir(table) if names.parse_manifest_name(n) is not None]
    assert len(parts) == 1 and len(manifests) <= 2, (parts, manifests)
    again.close()
