"""Salvage, restore, drop and the store lock."""

from __future__ import annotations

import posixpath

import pytest

import lamina
from lamina.io.sim import SimFS
from lamina.salvage import SalvageError
from lamina.testing.kv import kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _three_parts(fs: SimFS) -> tuple[list, str]:
    """Three parts of 40 single-row blocks each; returns all rows and the middle part's name."""
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    for p in range(3):
        kv.write(kv_batch([b"p%d-k%03d" % (p, i) for i in range(40)], [T0 + i for i in range(40)]))
        kv.flush()
    rows = kv.query()
    t = kv.tables()[0]
    victim = sorted(h.name for h in t.live_parts)[1]
    s.close()
    return rows, posixpath.join(t.path, victim)


def _frame_offsets(fs: SimFS, part_path: str) -> list[int]:
    s = open_kv_store(ROOT, fs=fs)
    try:
        t = s.engine("kv").tables()[0]
        h = next(h for h in t.live_parts if posixpath.join(t.path, h.name) == part_path)
        return [int(o) for o in h.reader.blocks.entries["offset"][:, 0]]
    finally:
        s.close()


def _torn_middle_block(fs: SimFS) -> tuple[list, str]:
    rows, victim = _three_parts(fs)
    offs = _frame_offsets(fs, victim)
    fs.corrupt(posixpath.join(victim, "values.bin"), offs[10] + 1, b"\xff\xff")  # one block damaged
    return rows, victim


def test_salvage_recovers_every_verifiable_block_and_counts_the_rest(sim: SimFS) -> None:
    rows, victim = _torn_middle_block(sim)
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.merge_now()  # the frame checksum catches it: quarantined at merge
    (q,) = s.quarantined()
    assert q.part == posixpath.basename(victim) and not q.salvaged
    report = s.salvage(q.spec)
    assert (report.rows_total, report.rows_recovered, report.rows_lost) == (40, 39, 1)
    assert report.blocks_lost == 1 and "checksum" in report.problems[0]
    got = {r[:3] for r in kv.query()}
    assert len(got) == 119 and got <= {r[:3] for r in rows}  # never a wrong row
    assert s.quarantined()[0].salvaged
    with pytest.raises(SalvageError, match="already salvaged"):
        s.salvage(q.spec)  # atomic and never applied twice
    s.close()
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 119 and s.quarantined()[0].salvaged
    s.close()


def test_restore_refuses_a_part_with_damaged_blocks(sim: SimFS) -> None:
    _torn_middle_block(sim)
    s = open_kv_store(ROOT, fs=sim)
    s.engine("kv").merge_now()
    (q,) = s.quarantined()
    with pytest.raises(SalvageError, match="1 of 40 rows fail verification"):
        s.restore(q.spec)
    assert len(s.engine("kv").query()) == 80
    s.close()


def test_restore_puts_back_a_part_that_was_quarantined_for_a_stray_file(sim: SimFS) -> None:
    rows, victim = _three_parts(sim)
    sim.write_file(posixpath.join(victim, "stray.txt"), b"operator notes")
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == 80
    (q,) = s.quarantined()
    assert q.reason["reason"] == "unknown_file"
    report = s.restore(q.spec)
    assert report.rows_lost == 0 and report.new_part
    assert sorted(r[:3] for r in s.engine("kv").query()) == sorted(r[:3] for r in rows)
    s.close()


def test_drop_needs_force_unless_salvaged(sim: SimFS) -> None:
    _torn_middle_block(sim)
    s = open_kv_store(ROOT, fs=sim)
    s.engine("kv").merge_now()
    (q,) = s.quarantined()
    with pytest.raises(lamina.LaminaError, match="not salvaged"):
        s.drop_quarantined(q.spec)
    s.salvage(q.part)
    s.drop_quarantined(q.part)
    assert s.quarantined() == [] and not sim.exists(q.path)
    s.close()


def test_auto_salvage_runs_right_after_quarantine(sim: SimFS) -> None:
    _torn_middle_block(sim)
    s = open_kv_store(ROOT, fs=sim, auto_salvage=True)
    s.engine("kv").merge_now()
    (q,) = s.quarantined()
    assert q.salvaged and len(s.engine("kv").query()) == 119
    s.close()


def test_salvage_of_a_part_whose_index_is_damaged_is_refused_clearly(sim: SimFS) -> None:
    _, victim = _three_parts(sim)
    sim.corrupt(posixpath.join(victim, "meta.bin"), 2, b"\x00\x00\x00")
    s = open_kv_store(ROOT, fs=sim)
    (q,) = s.quarantined()
    with pytest.raises(SalvageError, match="block index is damaged"):
        s.salvage(q.spec)
    s.close()


def test_a_second_process_cannot_open_an_open_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    s = open_kv_store(str(tmp_path))
    code = (
        "import lamina, sys\n"
        "from lamina.testing.kv import open_kv_store\n"
        f"try:\n    open_kv_store({str(tmp_path)!r})\nexcept lamina.LaminaError as e:\n"
        "    print(type(e).__name__); sys.exit(3)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "StoreLockedError" in r.stdout
    s.close()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
