"""Parts are deleted only on a manifest's word, and part IDs only come from the manifest's counter.

Before: a table whose manifests were all gone lost every part at the next open (each looked like
an uncommitted leftover) while `lamina check` exited 0 and `lamina repair` said "nothing to
repair"; a stray directory named `ffffffffffffffff` made new parts get 17-digit names that
Lamina's own parser calls foreign, and a later repair rebuilt a manifest with 0 parts.
"""

from __future__ import annotations

import json
import posixpath

import attrs
import pytest

from lamina import names
from lamina.check import Kind, check_store
from lamina.commit import write_manifest
from lamina.errors import CorruptManifestError, ManifestMissingError, PartIdExhaustedError
from lamina.format.checksum import crc32c
from lamina.format.part_meta import FORMAT_VERSION, MAX_PART_ID, SUPPORTED_VERSIONS, Manifest, PartMeta
from lamina.format.records import CHECKSUM_KEY, CONVERTER, dump_record, load_record
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.repair import repair_store
from lamina.testing.kv import KV, kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _registry() -> Registry:
    r = Registry()
    r._add_engine(KV, "<test>")
    return r


def _fill(fs: SimFS, nparts: int = 3) -> list[tuple]:
    s = open_kv_store(ROOT, fs=fs)
    kv = s.engine("kv")
    for p in range(nparts):
        kv.write(kv_batch([b"k%d-%d" % (p, i) for i in range(10)], [T0 + p * 100 + i for i in range(10)]))
        kv.flush()
    rows = sorted(kv.query())
    s.close()
    return rows


def _table(fs: SimFS) -> str:
    seg = fs.listdir(f"{ROOT}/kv/default")[0]
    return f"{ROOT}/kv/default/{seg}/shard-0"


def _parts(fs: SimFS) -> list[str]:
    return [n for n in fs.listdir(_table(fs)) if names.parse_part_name(n) is not None]


def test_a_table_whose_manifests_are_all_gone_keeps_every_part_and_repair_rebuilds_it(sim: SimFS) -> None:
    rows = _fill(sim)
    parts = _parts(sim)
    for n in sim.listdir(_table(sim)):
        if names.parse_manifest_name(n) is not None:
            sim.remove(posixpath.join(_table(sim), n))
    with pytest.raises(ManifestMissingError) as info:
        open_kv_store(ROOT, fs=sim)
    assert "lamina repair" in str(info.value) and parts[0] in str(info.value)
    assert _parts(sim) == parts  # nothing deleted by the refused open
    report = check_store(ROOT, fs=sim, registry=_registry())
    assert not report.ok
    assert [p.kind for p in report.damage] == [Kind.NO_MANIFEST]
    (result,) = repair_store(ROOT, fs=sim, registry=_registry())
    assert sorted(result.live) == parts
    s = open_kv_store(ROOT, fs=sim)
    assert sorted(s.engine("kv").query()) == rows
    s.close()


def test_a_fresh_table_without_a_manifest_or_parts_still_opens(sim: SimFS) -> None:
    sim.makedirs(f"{ROOT}/kv/default/seg-20231114/shard-0")
    sim.write_file(f"{ROOT}/lamina.json", b'{"format_version": 1}')
    s = open_kv_store(ROOT, fs=sim)
    assert s.engine("kv").query() == []
    s.close()


def test_a_stray_directory_at_the_top_of_the_id_space_does_not_widen_new_part_names(sim: SimFS) -> None:
    rows = _fill(sim)
    sim.makedirs(posixpath.join(_table(sim), "ffffffffffffffff"))
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.write(kv_batch([b"new"], [T0 + 999]))
    kv.flush()
    s.close()
    assert all(
        names.parse_part_name(n) is not None
        for n in sim.listdir(_table(sim))
        if len(n) >= 16 and "." not in n
    )
    assert "ffffffffffffffff" not in _parts(sim) and len(_parts(sim)) == 4
    registry = _registry()
    assert repair_store(ROOT, fs=sim, registry=registry) == []  # nothing to repair, nothing lost
    s = open_kv_store(ROOT, fs=sim)
    assert len(s.engine("kv").query()) == len(rows) + 1
    s.close()


def test_the_last_part_id_is_used_and_the_next_allocation_fails_keeping_the_rows(sim: SimFS) -> None:
    _fill(sim, nparts=1)
    (pid,) = [names.parse_part_name(n) for n in _parts(sim)]
    table = _table(sim)
    epoch = max(e for n in sim.listdir(table) if (e := names.parse_manifest_name(n)) is not None)
    write_manifest(sim, table, epoch + 1, [pid], [], MAX_PART_ID)  # as if every other ID were used
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.write(kv_batch([b"last"], [T0 + 1]))
    kv.flush()
    assert names.part_name(MAX_PART_ID) in _parts(sim)
    kv.write(kv_batch([b"one-too-many"], [T0 + 2]))
    with pytest.raises(PartIdExhaustedError):
        kv.flush()
    assert b"one-too-many" in {r[0] for r in kv.query()}  # still buffered, still served
    with pytest.raises(PartIdExhaustedError):
        s.close()  # closing flushes, and says so too


def test_a_manifest_whose_counter_is_outside_the_id_space_is_a_damaged_manifest(sim: SimFS) -> None:
    _fill(sim, nparts=1)
    table = _table(sim)
    epoch = max(e for n in sim.listdir(table) if (e := names.parse_manifest_name(n)) is not None)
    body = CONVERTER.unstructure(
        Manifest(format_version=FORMAT_VERSION, epoch=epoch + 1, parts=[1], created_ns=0, next_part_id=5)
    )
    body["next_part_id"] = MAX_PART_ID + 2  # as a writer bug or a hand edit would leave it
    body[CHECKSUM_KEY] = crc32c(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    data = json.dumps(body, indent=1).encode() + b"\n"
    sim.write_file(posixpath.join(table, names.manifest_name(epoch + 1)), data)
    with pytest.raises(CorruptManifestError) as info:
        open_kv_store(ROOT, fs=sim)
    assert "next_part_id" in str(info.value)


def test_repair_serves_a_copied_part_once_whatever_id_the_copy_claims(sim: SimFS) -> None:
    """A part directory copied under a new name, its record edited to claim that name (checksum
    recomputed): both validate, neither lists the other as a source. Repair tells them apart by
    content and sets the copy aside."""
    rows = _fill(sim)
    table = _table(sim)
    original = _parts(sim)[1]
    copy = names.part_name(0x99)
    for n in sim.listdir(posixpath.join(table, original)):
        sim.write_file(posixpath.join(table, copy, n), sim.read_file(posixpath.join(table, original, n)))
    meta_path = posixpath.join(table, copy, names.METADATA)
    meta = load_record(sim.read_file(meta_path), PartMeta, SUPPORTED_VERSIONS)
    sim.write_file(meta_path, dump_record(attrs.evolve(meta, part_id=0x99, seq=0x99)))
    newest = max(n for n in sim.listdir(table) if names.parse_manifest_name(n) is not None)
    sim.truncate(posixpath.join(table, newest), 3)  # repair has to rebuild from the parts
    (result,) = repair_store(ROOT, fs=sim, registry=_registry())
    assert result.quarantined == (copy,)
    assert original in result.live and copy not in result.live
    s = open_kv_store(ROOT, fs=sim)
    assert sorted(s.engine("kv").query()) == rows  # every row once
    reason = json.loads(sim.read_file(posixpath.join(table, "corrupt", copy, "reason.json")))
    assert f"a copy of part {original}" in reason["detail"]
    s.close()


def test_two_writes_of_the_same_rows_are_two_parts_to_repair(sim: SimFS) -> None:
    """The other side: identical rows written twice are two writes (an engine that keeps all
    rows returns both), not a copy."""
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    for _ in range(2):
        kv.write(kv_batch([b"same"], [T0]))
        kv.flush()
    s.close()
    newest = max(n for n in sim.listdir(_table(sim)) if names.parse_manifest_name(n) is not None)
    sim.truncate(posixpath.join(_table(sim), newest), 3)
    (result,) = repair_store(ROOT, fs=sim, registry=_registry())
    assert len(result.live) == 2 and not result.quarantined


def test_an_id_quarantined_by_repair_is_never_given_to_a_new_part(sim: SimFS) -> None:
    """Found by review: repair set part 2 aside while the older manifest's counter said 2; the
    next flush got ID 2, a salvage of corrupt/2 then wrote lineage [2], and the next repair took
    the new live part 2 for a retired input, so the open after it deleted row `c`."""
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    for key in (b"a", b"b"):
        kv.write(kv_batch([key], [T0 + ord(key)]))
        kv.flush()
    s.close()
    table = _table(sim)
    newest = max(n for n in sim.listdir(table) if names.parse_manifest_name(n) is not None)
    sim.truncate(posixpath.join(table, newest), 3)
    second = names.part_name(2)
    sim.truncate(posixpath.join(table, second, "values.bin"), 1)
    (result,) = repair_store(ROOT, fs=sim, registry=_registry())
    assert result.quarantined == (second,)
    s = open_kv_store(ROOT, fs=sim)
    kv = s.engine("kv")
    kv.write(kv_batch([b"c"], [T0 + 99]))
    kv.flush()
    assert second not in _parts(sim), "a new part took the ID of a quarantined one"
    s.salvage(f"kv/default/{posixpath.basename(posixpath.dirname(table))}/{second}")
    s.close()
    newest = max(n for n in sim.listdir(table) if names.parse_manifest_name(n) is not None)
    sim.truncate(posixpath.join(table, newest), 3)
    repair_store(ROOT, fs=sim, registry=_registry())
    s = open_kv_store(ROOT, fs=sim)
    assert {r[0] for r in s.engine("kv").query()} >= {b"a", b"c"}
    s.close()
