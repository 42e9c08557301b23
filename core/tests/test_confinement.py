"""Lamina acts only inside its store (SPEC §10.10): a symlink or special file planted in a store is
a foreign entry, reported and left alone; nothing is ever deleted, written or created through one,
and no FIFO is ever opened (which would block forever).

Each test plants the entry the reliability review used, on the real file system (the OS's own
symlink semantics are what matter), with a `canary` directory outside the store whose contents
must come through untouched. On the code before the fix, open deleted the canary's contents
through a link named like a leftover part or a `*.dropping` segment, quarantined into a linked
`corrupt/`, removed `*.tmp` files and wrote `reason.json` through a linked part, and `quarantine
drop --force` deleted through a link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina import names
from lamina.check import Kind, check_store
from lamina.errors import ForeignEntryError
from lamina.io.confined import ConfinedFS, SymlinkInStoreError
from lamina.io.fs import SYMLINK, NotRegularFileError, OSFileSystem
from lamina.io.sim import SimEntry, SimFS
from lamina.plugins import Registry
from lamina.testing.kv import KV, kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000
SEG = "seg-20231114"


def _registry() -> Registry:
    r = Registry()
    r._add_engine(KV, "<test>")
    return r


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside the store that no Lamina operation may touch."""
    d = tmp_path / "canary"
    d.mkdir()
    (d / "precious.txt").write_bytes(b"keep me")
    (d / "leftover.tmp").write_bytes(b"not Lamina's")
    (d / "0000000000000001").mkdir()
    (d / "0000000000000001" / "metadata.json").write_bytes(b"{}")
    return d


def _snapshot(d: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(d)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(d.rglob("*"))
        if not p.is_symlink()
    }


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    s = open_kv_store(str(root))
    kv = s.engine("kv")
    for p in range(3):
        kv.write(kv_batch([b"k%d-%d" % (p, i) for i in range(10)], [T0 + p * 100 + i for i in range(10)]))
        kv.flush()
    s.close()
    return root


def _table(root: Path) -> Path:
    return root / "kv" / "default" / SEG / "shard-0"


def _rows(root: Path) -> int:
    with open_kv_store(str(root)) as s:
        return len(s.engine("kv").query())


def test_a_symlink_named_like_an_unlisted_part_is_left_alone_with_its_target(
    store_dir: Path, canary: Path
) -> None:
    before = _snapshot(canary)
    link = _table(store_dir) / "00000000000000ff"
    link.symlink_to(canary)
    assert _rows(store_dir) == 30
    assert link.is_symlink() and _snapshot(canary) == before
    report = check_store(str(store_dir), registry=_registry())
    foreign = [p for p in report.problems if p.kind is Kind.FOREIGN_ENTRY]
    assert [p.file for p in foreign] == [link.name] and not report.ok


def test_a_symlink_named_like_a_dropping_segment_is_left_alone_with_its_target(
    store_dir: Path, canary: Path
) -> None:
    before = _snapshot(canary)
    link = store_dir / "kv" / "default" / "seg-20200101.dropping"
    link.symlink_to(canary)
    assert _rows(store_dir) == 30
    assert link.is_symlink() and _snapshot(canary) == before


def test_a_symlinked_corrupt_dir_never_receives_a_quarantined_part(store_dir: Path, canary: Path) -> None:
    before = _snapshot(canary)
    (_table(store_dir) / "corrupt").symlink_to(canary)
    victim = sorted(p for p in _table(store_dir).iterdir() if names.parse_part_name(p.name) is not None)[1]
    (victim / "values.bin").write_bytes(b"torn")
    with pytest.raises((ForeignEntryError, SymlinkInStoreError)) as info:
        open_kv_store(str(store_dir))
    assert "corrupt" in str(info.value) and "symlink" in str(info.value)
    assert _snapshot(canary) == before
    assert victim.is_dir()  # not moved anywhere: the open refused before touching it


def test_a_symlinked_txn_dir_refuses_the_open_and_its_files_survive(store_dir: Path, canary: Path) -> None:
    before = _snapshot(canary)
    (store_dir / "txn").symlink_to(canary)
    with pytest.raises(ForeignEntryError) as info:
        open_kv_store(str(store_dir))
    assert "txn" in str(info.value)
    assert _snapshot(canary) == before


def test_a_listed_part_that_is_a_symlink_refuses_the_open_and_nothing_is_written_through_it(
    store_dir: Path, canary: Path
) -> None:
    table = _table(store_dir)
    victim = sorted(p for p in table.iterdir() if names.parse_part_name(p.name) is not None)[0]
    moved = canary / "moved-part"
    victim.rename(moved)
    (moved / "debris.tmp").write_bytes(b"x")
    victim.symlink_to(moved)
    before = _snapshot(canary)
    with pytest.raises(ForeignEntryError) as info:
        open_kv_store(str(store_dir))
    assert victim.name in str(info.value)
    assert _snapshot(canary) == before  # no *.tmp removed, no reason.json written through it
    assert not (table / "corrupt").exists()


def test_quarantine_drop_never_deletes_through_a_symlink(store_dir: Path, canary: Path) -> None:
    table = _table(store_dir)
    victim = sorted(p for p in table.iterdir() if names.parse_part_name(p.name) is not None)[1]
    (victim / "values.bin").write_bytes(b"torn")
    with open_kv_store(str(store_dir)) as s:
        assert s.metrics.value("lamina_corrupt_parts_total") == 1
    quarantined = table / "corrupt" / victim.name
    (quarantined / "evidence").symlink_to(canary)
    before = _snapshot(canary)
    with open_kv_store(str(store_dir)) as s:
        (q,) = s.quarantined()
        with pytest.raises(ForeignEntryError) as info:
            s.drop_quarantined(q.spec, force=True)
    assert "evidence" in str(info.value)
    assert _snapshot(canary) == before
    assert quarantined.is_dir() and (quarantined / "values.bin").exists()  # nothing half-deleted


def test_a_symlinked_lamina_lock_creates_nothing_outside(tmp_path: Path, canary: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    outside = canary / "created-by-lamina"
    (root / "lamina.lock").symlink_to(outside)
    with open_kv_store(str(root)) as s:
        s.engine("kv").write(kv_batch([b"a"], [T0]))
    assert not outside.exists()


def test_a_symlinked_segment_refuses_the_open_and_its_target_is_untouched(
    store_dir: Path, canary: Path
) -> None:
    """Serving it would read outside the store, and skipping it would drop its rows from answers
    silently (and fail writes into its day later, less clearly): the open names it."""
    seg = store_dir / "kv" / "default" / SEG
    target = canary / "seg"
    seg.rename(target)
    seg.symlink_to(target)
    before = _snapshot(canary)
    with pytest.raises(ForeignEntryError) as info:
        open_kv_store(str(store_dir))
    assert SEG in str(info.value) and "symlink" in str(info.value)
    assert _snapshot(canary) == before
    report = check_store(str(store_dir), registry=_registry())
    assert any(p.kind is Kind.FOREIGN_ENTRY and SEG in p.table and p.is_damage for p in report.problems)


def test_a_data_file_replaced_by_a_symlink_quarantines_the_part_and_the_target_is_untouched(
    store_dir: Path, canary: Path
) -> None:
    table = _table(store_dir)
    victim = sorted(p for p in table.iterdir() if names.parse_part_name(p.name) is not None)[2]
    data = victim / "values.bin"
    copy = canary / "values.bin"
    copy.write_bytes(data.read_bytes())
    data.unlink()
    data.symlink_to(copy)
    before = _snapshot(canary)
    assert _rows(store_dir) == 20
    reason = json.loads((table / "corrupt" / victim.name / "reason.json").read_bytes())
    assert (reason["reason"], reason["file"]) == ("not_regular_file", "values.bin")
    assert (table / "corrupt" / victim.name / "values.bin").is_symlink()  # moved, never followed
    assert _snapshot(canary) == before


# -- FIFOs: never opened ----------------------------------------------------------------------


_OPEN = """
import json, sys
from lamina.errors import LaminaError
from lamina.testing.kv import open_kv_store
try:
    with open_kv_store(sys.argv[1]) as s:
        out = ["ok", len(s.engine("kv").query()), s.metrics.value("lamina_corrupt_parts_total")]
except LaminaError as e:
    out = ["refused", type(e).__name__, str(e)]
print(json.dumps(out))
"""


def _open_with_deadline(root: Path) -> list:
    """Open the store in a child process that must finish within 60 s (a FIFO opened for
    reading would block it forever)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _OPEN, str(root)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("opening the store blocked (on a FIFO)")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "where",
    ["metadata.json", "values.bin", "manifest", "lamina.json"],
)
def test_a_fifo_in_place_of_a_file_never_blocks_open_or_check(store_dir: Path, where: str) -> None:
    table = _table(store_dir)
    victim = sorted(p for p in table.iterdir() if names.parse_part_name(p.name) is not None)[1]
    if where == "manifest":
        path = max(p for p in table.iterdir() if names.parse_manifest_name(p.name) is not None)
    elif where == "lamina.json":
        path = store_dir / "lamina.json"
    else:
        path = victim / where
    path.unlink()
    os.mkfifo(path)
    got = _open_with_deadline(store_dir)
    if where in ("metadata.json", "values.bin"):
        assert got[0] == "ok" and got[1] == 20 and got[2] == 1, got  # the part is quarantined
    else:
        assert got[0] == "refused", got
        assert path.name in got[2], got
    report = check_store(str(store_dir), registry=_registry(), deep=True)  # must return, too
    if got[0] == "refused":
        assert not report.ok


# -- the mechanism, on SimFS -----------------------------------------------------------------


def test_simfs_models_symlinks_as_the_os_does() -> None:
    fs = SimFS()
    fs.write_file("/out/f", b"x")
    fs.makedirs("/db/a")
    fs.symlink("/out", "/db/a/link")
    assert fs.kind("/db/a/link") == SYMLINK and not fs.is_dir("/db/a/link")
    assert fs.read_file("/db/a/link/f") == b"x"  # a directory on the way is followed
    with pytest.raises(NotRegularFileError):
        fs.read_file("/db/a/link")
    with pytest.raises(OSError):
        fs.listdir("/db/a/link")  # O_NOFOLLOW on the last component
    fs.create("/db/a/link/new").close()  # the raw file system follows it...
    assert fs.exists("/out/new")
    assert fs.tree()["/db/a/link"] == SimEntry("symlink", "/out")


def test_confined_fs_refuses_every_mutation_through_a_symlink_below_the_root() -> None:
    fs = SimFS()
    fs.write_file("/out/f", b"x")
    fs.makedirs("/db/a")
    fs.symlink("/out", "/db/a/link")
    fs.write_file("/db/a/file.tmp", b"")
    c = ConfinedFS(fs, "/db")
    mutations = [
        lambda: c.create("/db/a/link/new"),
        lambda: c.mkdir("/db/a/link/d"),
        lambda: c.remove("/db/a/link/f"),
        lambda: c.remove("/db/a/link"),
        lambda: c.replace("/db/a/file.tmp", "/db/a/link/f"),
        lambda: c.replace("/db/a/link", "/db/a/moved"),
        lambda: c.rmdir("/db/a/link"),
        lambda: c.fsync_dir("/db/a/link"),
    ]
    for m in mutations:
        with pytest.raises(SymlinkInStoreError) as info:
            m()
        assert info.value.link == "/db/a/link"
    assert fs.tree()["/out/f"] == b"x" and "/out/new" not in fs.tree()
    c.create("/db/a/ok").close()  # outside any link: allowed
    assert fs.exists("/db/a/ok")


def test_the_os_file_system_never_opens_a_fifo_or_follows_a_symlink_for_reading(tmp_path: Path) -> None:
    fs = OSFileSystem()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "real").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for name in ("fifo", "link"):
        with pytest.raises(NotRegularFileError):
            fs.read_file(str(tmp_path / name))
        with pytest.raises(NotRegularFileError):
            fs.open_read(str(tmp_path / name))
    assert fs.kind(str(tmp_path / "fifo")) == "other" and fs.kind(str(tmp_path / "link")) == SYMLINK
    assert not fs.is_dir(str(tmp_path / "link"))


def test_a_store_whose_own_path_leads_through_symlinks_works(tmp_path: Path) -> None:
    """Links above the store, or the store's own path being one, are the user's choice (`/data
    -> /mnt/ssd`): followed. Found by a review: O_NOFOLLOW on every directory fsync made such a
    store unable to commit."""
    for i, leaf in enumerate(("store", "")):
        real = tmp_path / f"real{i}"
        real.mkdir()
        (tmp_path / f"link{i}").symlink_to(real)
        root = tmp_path / f"link{i}" / leaf if leaf else tmp_path / f"link{i}"
        with open_kv_store(str(root)) as s:
            s.engine("kv").write(kv_batch([b"a", b"b"], [T0, T0 + 1]))
            s.engine("kv").flush()
        with open_kv_store(str(root)) as s:
            assert len(s.engine("kv").query()) == 2
        assert check_store(str(root), registry=_registry()).ok


def test_a_directory_replaced_by_a_symlink_while_the_store_is_open_is_caught_at_the_next_write(
    store_dir: Path, canary: Path
) -> None:
    s = open_kv_store(str(store_dir))
    kv = s.engine("kv")
    kv.write(kv_batch([b"one"], [T0 + 50]))
    kv.flush()  # every directory on the way is now known to be one
    seg = store_dir / "kv" / "default" / SEG
    seg.rename(canary / "seg")
    seg.symlink_to(canary / "seg")
    before = _snapshot(canary)
    kv.write(kv_batch([b"two"], [T0 + 60]))
    with pytest.raises(SymlinkInStoreError):
        kv.flush()
    assert _snapshot(canary) == before  # not one file of the new part written through the link
    with pytest.raises(SymlinkInStoreError):
        s.close()
