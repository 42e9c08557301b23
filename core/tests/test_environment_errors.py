"""Only proven damage quarantines (SPEC §10.9): an OS error that says nothing about the data
(descriptors, memory, permissions, an interrupted call, EIO on a read) fails the operation with a
clear `EnvironmentIOError`, leaves every part live, and the same operation succeeds once the
condition is gone. One test per call site that can quarantine: open, merge, query, repair; and
`lamina check` reports such a failure as an error, never as damage.

Before this, open turned any OSError while reading a part into `reason: io_error` and moved the
part to `corrupt/`: under `ulimit -n 1024` a healthy 300-part table lost 208 parts."""

from __future__ import annotations

import errno
import posixpath

import pytest

from lamina import names
from lamina.check import Kind, Severity, check_store
from lamina.errors import EnvironmentIOError
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.repair import repair_store
from lamina.testing.kv import KV, kv_batch, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000
ENVIRONMENT = [
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOMEM,
    errno.EINTR,
    errno.EAGAIN,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
]
IDS = [errno.errorcode[e] for e in ENVIRONMENT]
#: What reading a part does, and so what can fail: open (a data file), whole-file read (metadata,
#: manifests), listing, positional read.
READ_OPS = ["open_read", "read_file", "listdir", "pread"]


def _fill(fs: SimFS, nparts: int = 3) -> list[tuple]:
    s = open_kv_store(ROOT, fs=fs, background=False)
    kv = s.engine("kv")
    for p in range(nparts):
        kv.write(kv_batch([b"k%d-%d" % (p, i) for i in range(20)], [T0 + p * 100 + i for i in range(20)]))
        kv.flush()
    rows = sorted(kv.query())
    s.close()
    return rows


def _table(fs: SimFS) -> str:
    seg = fs.listdir(f"{ROOT}/kv/default")[0]
    return f"{ROOT}/kv/default/{seg}/shard-0"


def _parts(fs: SimFS) -> list[str]:
    return [n for n in fs.listdir(_table(fs)) if names.parse_part_name(n) is not None]


def _manifests(fs: SimFS) -> list[str]:
    return [n for n in fs.listdir(_table(fs)) if names.parse_manifest_name(n) is not None]


def _assert_untouched(fs: SimFS, parts: list[str], manifests: list[str]) -> None:
    assert not fs.exists(posixpath.join(_table(fs), names.CORRUPT_DIR)), "a healthy part was quarantined"
    assert _parts(fs) == parts
    assert _manifests(fs) == manifests


def _fault_on_part(fs: SimFS, op: str, err: int, part: str) -> None:
    pattern = f"{_table(fs)}/{part}" if op == "listdir" else f"{_table(fs)}/{part}/*"
    fs.inject(op, pattern, err, once=False)


@pytest.mark.parametrize("op", READ_OPS)
@pytest.mark.parametrize("err", ENVIRONMENT, ids=IDS)
def test_an_environment_error_at_open_fails_the_open_and_quarantines_nothing(
    sim: SimFS, err: int, op: str
) -> None:
    rows = _fill(sim)
    parts, manifests = _parts(sim), _manifests(sim)
    _fault_on_part(sim, op, err, parts[1])
    with pytest.raises(EnvironmentIOError) as info:
        open_kv_store(ROOT, fs=sim, background=False)
    assert info.value.errno == err
    assert parts[1] in str(info.value) and "not damage" in str(info.value)
    _assert_untouched(sim, parts, manifests)
    sim.clear_faults()
    s = open_kv_store(ROOT, fs=sim, background=False)
    assert sorted(s.engine("kv").query()) == rows
    assert s.metrics.value("lamina_corrupt_parts_total") == 0
    s.close()


@pytest.mark.parametrize("err", ENVIRONMENT, ids=IDS)
def test_an_environment_error_during_a_merge_fails_it_and_quarantines_nothing(sim: SimFS, err: int) -> None:
    rows = _fill(sim)
    s = open_kv_store(ROOT, fs=sim, background=False)
    s.descriptors.close()  # the merge must open the files again, through the fault
    parts = _parts(sim)
    _fault_on_part(sim, "open_read", err, parts[0])
    _fault_on_part(sim, "pread", err, parts[0])
    kv = s.engine("kv")
    with pytest.raises(EnvironmentIOError) as info:
        kv.merge_now()
    assert info.value.errno == err
    assert not sim.exists(posixpath.join(_table(sim), names.CORRUPT_DIR))
    assert sorted(h.name for t in kv.tables() for h in t.live_parts) == parts
    assert s.metrics.value("lamina_corrupt_parts_total") == 0
    sim.clear_faults()
    assert kv.merge_now() == 1
    assert sorted(kv.query()) == rows
    s.close()


@pytest.mark.parametrize("err", ENVIRONMENT, ids=IDS)
def test_an_environment_error_during_a_query_fails_it_and_quarantines_nothing(sim: SimFS, err: int) -> None:
    rows = _fill(sim)
    s = open_kv_store(ROOT, fs=sim, background=False)
    s.descriptors.close()
    parts = _parts(sim)
    _fault_on_part(sim, "pread", err, parts[2])
    kv = s.engine("kv")
    with pytest.raises(EnvironmentIOError):
        kv.query()
    assert sorted(h.name for t in kv.tables() for h in t.live_parts) == parts
    assert not sim.exists(posixpath.join(_table(sim), names.CORRUPT_DIR))
    sim.clear_faults()
    assert sorted(kv.query()) == rows
    s.close()


@pytest.mark.parametrize("op", ["read_file", "pread"])
@pytest.mark.parametrize("err", [errno.EMFILE, errno.EACCES, errno.EIO], ids=["EMFILE", "EACCES", "EIO"])
def test_an_environment_error_during_repair_stops_it_before_it_moves_anything(
    sim: SimFS, err: int, op: str
) -> None:
    rows = _fill(sim)
    parts = _parts(sim)
    newest = max(_manifests(sim))
    sim.truncate(posixpath.join(_table(sim), newest), 5)  # give repair something to do
    _fault_on_part(sim, op, err, parts[1])
    registry = Registry()
    registry._add_engine(KV, "<test>")
    with pytest.raises(EnvironmentIOError):
        repair_store(ROOT, fs=sim, registry=registry)
    assert not sim.exists(posixpath.join(_table(sim), names.CORRUPT_DIR))
    assert _parts(sim) == parts
    sim.clear_faults()
    (result,) = repair_store(ROOT, fs=sim, registry=registry)
    assert sorted(result.live) == parts and not result.quarantined
    s = open_kv_store(ROOT, fs=sim, background=False)
    assert sorted(s.engine("kv").query()) == rows
    s.close()


@pytest.mark.parametrize("err", [errno.EMFILE, errno.EACCES, errno.EIO], ids=["EMFILE", "EACCES", "EIO"])
def test_check_reports_an_environment_error_as_an_error_never_as_damage(sim: SimFS, err: int) -> None:
    _fill(sim)
    parts = _parts(sim)
    _fault_on_part(sim, "read_file", err, parts[0])
    registry = Registry()
    registry._add_engine(KV, "<test>")
    report = check_store(ROOT, fs=sim, registry=registry, deep=True)
    assert not report.ok
    assert not report.damage, report.damage
    (problem,) = report.errors
    assert (problem.kind, problem.part, problem.severity) == (Kind.ENVIRONMENT, parts[0], Severity.ERROR)
    assert errno.errorcode[err] == problem.reason


def test_a_directory_where_a_data_file_belongs_is_still_damage(sim: SimFS) -> None:
    """The other side of the line: an OS error that proves the part is not what was written."""
    _fill(sim)
    victim = _parts(sim)[1]
    path = posixpath.join(_table(sim), victim, "values.bin")
    sim.remove(path)
    sim.makedirs(path)
    s = open_kv_store(ROOT, fs=sim, background=False)
    assert sim.listdir(posixpath.join(_table(sim), names.CORRUPT_DIR)) == [victim]
    assert s.metrics.value("lamina_corrupt_parts_total") == 1
    s.close()


def test_the_descriptor_cache_keeps_at_most_its_capacity_idle(sim: SimFS) -> None:
    _fill(sim, nparts=12)
    s = open_kv_store(ROOT, fs=sim, background=False, max_open_files=5)
    assert len(s.engine("kv").query()) == 12 * 20
    assert s.descriptors.open_count <= 5
    assert s.descriptors.evicted > 0, "the cache never had to evict: the test proves nothing"
    s.close()
    assert s.descriptors.open_count == 0


def test_an_environment_error_on_a_positional_read_names_the_file(sim: SimFS) -> None:
    """pread(2) reports no file name; the message must still say which file it was."""
    _fill(sim)
    s = open_kv_store(ROOT, fs=sim, background=False)
    s.descriptors.close()
    victim = _parts(sim)[0]
    sim.inject("pread", f"{_table(sim)}/{victim}/*", errno.EIO, once=False)
    with pytest.raises(EnvironmentIOError) as info:
        s.engine("kv").query()
    assert f"{victim}/" in str(info.value) and "None" not in str(info.value)
    sim.clear_faults()
    s.close()


def test_an_environment_error_during_automatic_salvage_leaves_the_part_quarantined(sim: SimFS) -> None:
    """Found by review: only SalvageError was caught, so an EIO while salvaging failed the open
    after the quarantine had been committed."""
    _fill(sim)
    victim = _parts(sim)[1]
    sim.truncate(posixpath.join(_table(sim), victim, "values.bin"), 7)
    fault = sim.inject("read_file", f"{_table(sim)}/corrupt/{victim}/*", errno.EIO, once=False)
    s = open_kv_store(ROOT, fs=sim, background=False, auto_salvage=True)
    assert fault.fired, "salvage never read the part: the test proves nothing"
    assert sim.listdir(posixpath.join(_table(sim), names.CORRUPT_DIR)) == [victim]
    assert len(s.engine("kv").query()) == 40
    s.close()
