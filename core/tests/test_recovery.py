"""Recovery on open (SPEC §6), quarantine, fsync poisoning and ENOSPC, on the kv reference engine."""

from __future__ import annotations

import errno
import json
import posixpath

import pytest

import lamina
from lamina import names
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.repair import repair_store
from lamina.testing.kv import KV, kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _store_with_parts(fs: SimFS, nparts: int = 3) -> list[tuple]:
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    for p in range(nparts):
        kv.write(kv_batch([b"k%d" % i for i in range(p, p + 20)], [T0 + p * 100 + i for i in range(20)]))
        kv.flush()
    rows = kv.query()
    s.close()
    return rows


def _table(fs: SimFS) -> str:
    seg = fs.listdir(f"{ROOT}/kv/default")[0]
    return f"{ROOT}/kv/default/{seg}/shard-0"


def _parts(fs: SimFS) -> list[str]:
    return [n for n in fs.listdir(_table(fs)) if names.parse_part_name(n) is not None]


def _reason(fs: SimFS, part: str) -> dict:
    return json.loads(fs.read_file(posixpath.join(_table(fs), "corrupt", part, "reason.json")))


def test_truncated_data_file_is_quarantined_with_reason_and_others_survive(sim: SimFS) -> None:
    rows = _store_with_parts(sim)
    victim = _parts(sim)[1]
    path = posixpath.join(_table(sim), victim, "values.bin")
    sim.truncate(path, sim.file_size(path) - 3)
    s = open_kv_store(ROOT, fs=sim)
    got = s.engine("kv").query()
    assert victim not in _parts(sim)
    r = _reason(sim, victim)
    assert (r["reason"], r["file"], r["stage"], r["engine"]) == ("size_mismatch", "values.bin", "open", "kv")
    assert s.metrics.value("lamina_corrupt_parts_total", reason="size_mismatch", stage="open") == 1
    lost = {x[:3] for x in rows} - {x[:3] for x in got}
    assert lost and all(k in {b"k%d" % i for i in range(1, 21)} for k, *_ in lost)
    assert {x[:3] for x in got} <= {x[:3] for x in rows}
    s.close()


def test_quarantine_happens_once_across_restarts(sim: SimFS) -> None:
    _store_with_parts(sim)
    victim = _parts(sim)[0]
    sim.remove(posixpath.join(_table(sim), victim, "meta.bin"))
    counts = []
    for _ in range(5):
        s = open_kv_store(ROOT, fs=sim)
        counts.append((s.metrics.value("lamina_corrupt_parts_total"), len(s.engine("kv").query())))
        s.engine("kv").merge_now()
        s.close()
    assert counts[0][0] == 1 and all(c == 0 for c, _ in counts[1:])
    assert len({n for _, n in counts}) == 1  # row count stable
    assert sim.listdir(posixpath.join(_table(sim), "corrupt")) == [victim]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda fs, p: fs.remove(f"{p}/metadata.json"), "missing_file"),
        (lambda fs, p: fs.write_file(f"{p}/stray.bin", b"x"), "unknown_file"),
        (lambda fs, p: fs.corrupt(f"{p}/metadata.json", 30, b"Z"), "metadata"),
        (lambda fs, p: fs.corrupt(f"{p}/meta.bin", 3, b"\xff"), "checksum"),
        (lambda fs, p: fs.truncate(f"{p}/ts.bin", 0), "size_mismatch"),
    ],
)
def test_damaged_listed_part_is_quarantined_not_deleted(sim: SimFS, damage, reason: str) -> None:  # type: ignore[no-untyped-def]
    _store_with_parts(sim, 2)
    victim = _parts(sim)[0]
    damage(sim, posixpath.join(_table(sim), victim))
    s = open_kv_store(ROOT, fs=sim)
    assert _reason(sim, victim)["reason"] == reason
    assert s.engine("kv").stats().quarantined == 1
    assert len(s.engine("kv").query()) == 20
    s.close()


def test_unknown_format_version_is_reported_as_such(sim: SimFS) -> None:
    _store_with_parts(sim, 1)
    p = posixpath.join(_table(sim), _parts(sim)[0], "metadata.json")
    body = json.loads(sim.read_file(p))
    body["format_version"] = 99
    sim.write_file(p + ".new", json.dumps(body).encode())
    sim.replace(p + ".new", p)
    s = open_kv_store(ROOT, fs=sim)
    r = _reason(
        sim, _parts(sim)[0] if _parts(sim) else sim.listdir(posixpath.join(_table(sim), "corrupt"))[0]
    )
    assert r["reason"] == "format_version" and "99" in r["detail"]
    s.close()


def test_uncommitted_leftovers_and_tmp_files_are_removed(sim: SimFS) -> None:
    rows = _store_with_parts(sim, 1)
    t = _table(sim)
    sim.makedirs(f"{t}/00000000000000ff")
    sim.write_file(f"{t}/00000000000000ff/values.bin", b"partial")
    sim.write_file(f"{t}/0000000000000099.snp.tmp", b"{")
    s = open_kv_store(ROOT, fs=sim)
    assert s.engine("kv").query() == rows
    assert not sim.exists(f"{t}/00000000000000ff") and not sim.exists(f"{t}/0000000000000099.snp.tmp")
    assert s.metrics.value("lamina_corrupt_parts_total") == 0
    s.close()


def test_listed_part_missing_entirely_is_an_error_naming_it(sim: SimFS) -> None:
    _store_with_parts(sim, 2)
    victim = _parts(sim)[0]
    from lamina.io.durable import rmtree

    rmtree(sim, posixpath.join(_table(sim), victim))
    with pytest.raises(lamina.MissingPartError, match=victim):
        open_kv_store(ROOT, fs=sim)


def test_damaged_newest_manifest_refuses_to_open_unless_rollback_allowed(sim: SimFS) -> None:
    _store_with_parts(sim, 2)
    t = _table(sim)
    newest = max(n for n in sim.listdir(t) if n.endswith(".snp"))
    sim.corrupt(f"{t}/{newest}", 5, b"#")
    with pytest.raises(lamina.CorruptManifestError, match="lamina repair"):
        open_kv_store(ROOT, fs=sim)
    s = open_kv_store(ROOT, fs=sim, allow_rollback=True)
    assert len(s.engine("kv").query()) == 20  # rolled back to the previous epoch: first part only
    s.close()


def test_when_no_manifest_verifies_even_rollback_refuses_and_deletes_nothing(sim: SimFS) -> None:
    """Found by review (issue 7): with allow_rollback and every manifest damaged, open went on
    without a manifest, removed every part as an uncommitted leftover and wrote an empty one,
    silently losing the table. It must refuse, keep every part, and leave it to repair."""
    _store_with_parts(sim, 2)
    t = _table(sim)
    for n in sim.listdir(t):
        if n.endswith(".snp"):
            sim.corrupt(f"{t}/{n}", 5, b"#")
    parts = _parts(sim)
    with pytest.raises(lamina.CorruptManifestError, match="nothing to roll back to"):
        open_kv_store(ROOT, fs=sim, allow_rollback=True)
    assert _parts(sim) == parts  # nothing removed
    registry = Registry()
    registry._add_engine(KV, "<direct>")
    assert len(repair_store(ROOT, fs=sim, registry=registry)) == 1
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 40
    s.close()


def test_interrupted_quarantine_is_completed_on_open(sim: SimFS) -> None:
    _store_with_parts(sim, 2)
    t = _table(sim)
    victim = _parts(sim)[0]
    sim.makedirs(f"{t}/corrupt")
    sim.replace(f"{t}/{victim}", f"{t}/corrupt/{victim}")  # crash before reason.json and manifest
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 20
    assert _reason(sim, victim)["stage"] == "recovery"
    s.close()


def test_fsync_failure_poisons_table_until_reopen(sim: SimFS) -> None:
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a"], [T0]))
    kv.flush()
    kv.write(kv_batch([b"b"], [T0 + 1]))
    sim.inject("fsync", "*/values.bin", errno.EIO)
    with pytest.raises(OSError):
        kv.flush()
    with pytest.raises(lamina.PoisonedTableError):
        kv.flush()
    with pytest.raises(lamina.PoisonedTableError):
        kv.write(kv_batch([b"c"], [T0 + 2]))
    with pytest.raises(lamina.PoisonedTableError):
        s.close()  # close tries to flush the buffered row and fails, but still releases the store
    s2 = open_kv_store(ROOT, fs=sim)
    assert [r[0] for r in s2.engine("kv").query()] == [b"a"]
    s2.engine("kv").write(kv_batch([b"d"], [T0 + 3]))
    s2.engine("kv").flush()
    assert [r[0] for r in s2.engine("kv").query()] == [b"a", b"d"]
    s2.close()


def test_enospc_fails_flush_cleanly_and_retry_succeeds(sim: SimFS) -> None:
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a", b"b"], [T0, T0 + 1]))
    kv.flush()
    kv.write(kv_batch([b"c"], [T0 + 2]))
    fault = sim.inject("write", "*/values.bin", errno.ENOSPC, once=False)
    with pytest.raises(OSError) as exc:
        kv.flush()
    assert exc.value.errno == errno.ENOSPC
    assert [r[0] for r in kv.query()] == [b"a", b"b", b"c"]  # still buffered and visible
    assert len(_parts(sim)) == 1  # the partial part was removed
    fault.cancel()
    assert kv.flush()
    assert [r[0] for r in kv.query()] == [b"a", b"b", b"c"]
    s.close()
    s2 = open_kv_store(ROOT, fs=sim)
    assert [r[0] for r in s2.engine("kv").query()] == [b"a", b"b", b"c"]
    s2.close()


def test_merge_quarantines_a_torn_input_and_merges_the_rest(sim: SimFS) -> None:
    rows = _store_with_parts(sim, 3)
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    t = kv.tables()[0]
    victim = t.live_parts[1]
    # forge: flip a byte inside a frame, size unchanged, so only the frame checksum can tell
    path = posixpath.join(t.path, victim.name, "values.bin")
    sim.corrupt(path, 2, b"\x00\x00")
    for _ in range(3):
        kv.merge_now()
    assert s.metrics.value("lamina_corrupt_parts_total", stage="merge", reason="checksum") == 1
    assert len(t.live_parts) == 1
    got = {r[:3] for r in kv.query()}
    assert len(got) == 40 and got <= {r[:3] for r in rows}
    s.close()


def test_retention_drops_whole_expired_segments(sim: SimFS) -> None:
    import attrs

    from lamina.plugins import Registry
    from lamina.testing.kv import KV

    day = 86_400 * 10**9
    eng = attrs.evolve(KV, retention_ns=2 * day)
    s = lamina.Store(ROOT, fs=sim, registry=Registry(), engines=[eng], background=False)
    kv = s.engine("kv")
    kv.write(kv_batch([b"old", b"new"], [T0, T0 + 5 * day]))
    kv.flush()
    assert len(kv.tables()) == 2
    assert kv.apply_retention(now_ns=T0 + 5 * day) == 1
    assert [r[0] for r in kv.query()] == [b"new"]
    assert len(sim.listdir(f"{ROOT}/kv/default")) == 1
    s.close()


def test_queries_never_see_a_part_disappear_during_merge(sim: SimFS) -> None:
    _store_with_parts(sim, 3)
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    t = kv.tables()[0]
    snap = t.snapshot()
    before = [h.name for h in snap.parts]
    kv.merge_now()
    # the retired parts are still readable through the old snapshot
    assert sum(len(h.reader.blocks.keys) for h in snap.parts) > 0
    for h in snap.parts:
        h.reader.verify_all()
    assert all(sim.exists(posixpath.join(t.path, n)) for n in before)
    snap.release()
    assert not any(sim.exists(posixpath.join(t.path, n)) for n in before)
    s.close()


def test_listed_part_replaced_by_a_plain_file_is_quarantined(sim: SimFS) -> None:
    from lamina.io.durable import rmtree

    _store_with_parts(sim, 2)
    t = _table(sim)
    victim = _parts(sim)[0]
    rmtree(sim, f"{t}/{victim}")
    sim.write_file(f"{t}/{victim}", b"not a part")
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 20
    assert _reason(sim, victim)["reason"] == "missing_file"
    s.close()


def test_retention_waits_for_running_queries_before_deleting_a_segment(sim: SimFS) -> None:
    import attrs

    from lamina.plugins import Registry
    from lamina.testing.kv import KV

    day = 86_400 * 10**9
    s = lamina.Store(
        ROOT, fs=sim, registry=Registry(), engines=[attrs.evolve(KV, retention_ns=day)], background=False
    )
    kv = s.engine("kv")
    kv.write(kv_batch([b"old"], [T0]))
    kv.flush()
    t = kv.tables()[0]
    snap = t.snapshot()  # a query in flight over the expiring segment
    assert kv.apply_retention(now_ns=T0 + 3 * day) == 1
    assert sim.exists(t.path)  # not deleted under the reader
    with pytest.raises(lamina.InvalidInputError, match="being dropped"):
        kv.write(kv_batch([b"late"], [T0 + 1]))
    for h in snap.parts:
        h.reader.verify_all()
    snap.release()
    assert not sim.exists(posixpath.dirname(t.path))
    kv.write(kv_batch([b"late"], [T0 + 1]))  # once gone, the segment can start anew
    s.close()


def test_query_time_damage_quarantines_the_right_table_when_part_names_repeat(sim: SimFS) -> None:
    day = 86_400 * 10**9
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.write(kv_batch([b"a%d" % i for i in range(20)], [T0 + i for i in range(20)]))
    kv.write(kv_batch([b"b%d" % i for i in range(20)], [T0 + day + i for i in range(20)]))
    kv.flush()  # two segments, each with a part named ...0001
    t1, t2 = kv.tables()
    assert [h.name for h in t1.live_parts] == [h.name for h in t2.live_parts]
    name = t2.live_parts[0].name
    sim.corrupt(posixpath.join(t2.path, name, "values.bin"), 2, b"\xff\xff")  # only the second day
    with pytest.raises(lamina.CorruptPartError):
        kv.query()
    assert len(t1.live_parts) == 1 and len(t2.live_parts) == 0
    assert [q.table for q in s.quarantined()] == [t2.path]
    assert len(kv.query()) == 20
    s.close()
