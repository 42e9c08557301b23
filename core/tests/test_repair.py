"""`repair_store`: rebuild a table's manifest from part lineage when open must refuse."""

from __future__ import annotations

import posixpath

import pytest

import lamina
from lamina.io.durable import rmtree
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.plugins import Registry
from lamina.repair import repair_store
from lamina.testing.kv import KV, kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _registry() -> Registry:
    reg = Registry()
    reg._add_engine(KV, "<test>")
    return reg


def _store(fs: SimFS, nparts: int = 3) -> tuple[str, list]:
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    for p in range(nparts):
        kv.write(kv_batch([b"p%d-%d" % (p, i) for i in range(10)], [T0 + i for i in range(10)]))
        kv.flush()
    t = kv.tables()[0].path
    rows = kv.query()
    s.close()
    return t, rows


def _newest_manifest(fs: SimFS, t: str) -> str:
    return posixpath.join(t, max(n for n in fs.listdir(t) if n.endswith(".snp")))


def test_repair_rebuilds_a_damaged_newest_manifest_without_losing_the_last_commit(sim: SimFS) -> None:
    t, rows = _store(sim)
    sim.corrupt(_newest_manifest(sim, t), 4, b"#")
    with pytest.raises(lamina.CorruptManifestError):
        open_kv_store(ROOT, fs=sim)
    (result,) = repair_store(ROOT, fs=sim, registry=_registry())
    assert len(result.live) == 3 and not result.quarantined
    s = open_kv_store(ROOT, fs=sim)
    assert s.engine("kv").query() == rows  # nothing rolled back
    s.close()
    assert repair_store(ROOT, fs=sim, registry=_registry()) == []  # healthy now: nothing to do


def test_repair_after_a_part_vanished_keeps_the_rest(sim: SimFS) -> None:
    t, _ = _store(sim)
    victim = sorted(n for n in sim.listdir(t) if not n.endswith(".snp"))[0]
    rmtree(sim, posixpath.join(t, victim))
    with pytest.raises(lamina.MissingPartError):
        open_kv_store(ROOT, fs=sim)
    repair_store(ROOT, fs=sim, registry=_registry())
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 20
    s.close()


def test_repair_prefers_a_merge_output_over_its_inputs_still_on_disk() -> None:
    """A merge committed, its inputs not deleted yet, then the manifest is damaged: lineage says
    the inputs are retired, so their rows are not counted twice."""
    full = SimFS()
    _store(full)
    s = open_kv_store(ROOT, fs=full)
    s.engine("kv").merge_now()
    s.close()
    first_rmdir = next(op.index for op in full.ops if op.op == "rmdir")
    fs = SimFS()
    fs.crash_at(first_rmdir)  # crash before the first retired input directory is gone
    _store(fs)
    s = open_kv_store(ROOT, fs=fs)
    with pytest.raises(SimulatedCrash):
        s.engine("kv").merge_now()
    state = fs.crash_state("process")
    t = f"{ROOT}/kv/default/{state.listdir(f'{ROOT}/kv/default')[0]}/shard-0"
    parts = [n for n in state.listdir(t) if not n.endswith(".snp")]
    assert len(parts) == 4  # output plus three retired inputs
    state.corrupt(_newest_manifest(state, t), 4, b"#")
    (result,) = repair_store(ROOT, fs=state, registry=_registry())
    # the half-deleted input is neither live nor quarantined: the output holds its rows
    assert len(result.live) == 1 and not result.quarantined
    s = open_kv_store(ROOT, fs=state)
    rows = s.engine("kv").query()
    assert len(rows) == 30 and len(set(r[:3] for r in rows)) == 30
    s.close()


def test_repair_quarantines_invalid_parts_instead_of_dropping_them(sim: SimFS) -> None:
    t, _ = _store(sim)
    victim = sorted(n for n in sim.listdir(t) if not n.endswith(".snp"))[1]
    sim.truncate(posixpath.join(t, victim, "values.bin"), 1)
    sim.corrupt(_newest_manifest(sim, t), 4, b"#")
    (result,) = repair_store(ROOT, fs=sim, registry=_registry())
    assert result.quarantined == (victim,)
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 20 and s.quarantined()[0].reason["stage"] == "repair"
    s.close()


def test_repair_refuses_while_the_store_is_open(sim: SimFS) -> None:
    _store(sim)
    s = open_kv_store(ROOT, fs=sim)
    with pytest.raises(lamina.LaminaError, match="open in another process"):
        repair_store(ROOT, fs=sim, registry=_registry())
    s.close()


def test_repair_after_chained_merges_does_not_resurrect_retired_ancestors(sim: SimFS) -> None:
    """A,B -> C while a query holds A and B; C,D -> E deletes C at once. With A, B and E on
    disk, only E may be live: E's lineage must name A and B, not just C."""
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")

    def flush(p: int) -> None:
        kv.write(kv_batch([b"p%d-%d" % (p, i) for i in range(10)], [T0 + i for i in range(10)]))
        kv.flush()

    flush(0)
    flush(1)
    t = kv.tables()[0]
    held = t.snapshot(include_memory=False)  # a long query keeps A and B on disk
    a, b = sorted(h.part_id for h in t.live_parts)
    c = t.merge([a, b])
    flush(2)
    d = max(h.part_id for h in t.live_parts)
    t.merge([c, d])
    rows = sorted(r[:3] for r in kv.query())
    state = sim.crash_state("process")  # dies with the query still holding A and B
    held.release()
    state.corrupt(_newest_manifest(state, t.path), 4, b"#")
    (result,) = repair_store(ROOT, fs=state, registry=_registry())
    assert len(result.live) == 1
    s2 = open_kv_store(ROOT, fs=state)
    assert sorted(r[:3] for r in s2.engine("kv").query()) == rows  # 30 rows, none twice
    s2.close()
