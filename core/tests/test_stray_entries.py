"""A catalogue of stray and malformed entries in a store tree, and what each gets.

For every entry: open either proceeds safely (every row it can serve is served, nothing Lamina did
not make is touched) or refuses with a `LaminaError` naming the entry, changing nothing;
`lamina check` reports it as an error or as damage (never "OK"); `lamina repair` fixes what it
safely can (a damaged descriptor) and leaves the rest for the operator, who check tells what to
do. Before: a renamed dataset or segment directory silently dropped its rows from queries with
only a log warning; a file where a directory belongs failed later writes with a raw OSError.

`docs/reliability.md` lists the catalogue with its outcomes (generated from CATALOGUE below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from lamina import names
from lamina.check import check_store
from lamina.errors import LaminaError
from lamina.plugins import Registry
from lamina.repair import repair_store
from lamina.testing.kv import KV, kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000
SEG = "seg-20231114"
ROWS = 30


@attrs.frozen
class Stray:
    """One catalogue entry: what to plant, what open must do, how many rows it then serves."""

    name: str
    plant: Callable[[Path], str]  # returns the entry's name, as messages must quote it
    opens: bool
    rows: int = ROWS
    repairable: bool = False


def _table(root: Path) -> Path:
    return root / "kv" / "default" / SEG / "shard-0"


def _part(root: Path, i: int) -> Path:
    return sorted(p for p in _table(root).iterdir() if names.parse_part_name(p.name) is not None)[i]


def _file(path: Path, data: bytes = b"not Lamina's") -> str:
    path.write_bytes(data)
    return path.name


def _dir(path: Path) -> str:
    path.mkdir()
    (path / "inside").write_bytes(b"x")
    return path.name


def _replace_with_dir(path: Path) -> str:
    path.unlink()
    path.mkdir()
    return path.name


def _move(src: Path, dst: Path) -> str:
    src.rename(dst)
    return dst.name


def _copy(src: Path, name: str) -> str:
    shutil.copytree(src, src.parent / name)
    return name


def _renamed(src: Path, name: str) -> str:
    """Move a part aside; the refusal names the part that is now missing from its place."""
    src.rename(src.parent / name)
    return src.name


def _newest_manifest(root: Path) -> Path:
    return max(p for p in _table(root).iterdir() if names.parse_manifest_name(p.name) is not None)


CATALOGUE = [
    # -- store level
    Stray("descriptor is a directory", lambda r: _replace_with_dir(r / "lamina.json"), opens=False),
    Stray("descriptor is empty", lambda r: _file(r / "lamina.json", b""), opens=False, repairable=True),
    Stray(
        "descriptor is garbage", lambda r: _file(r / "lamina.json", b"\x00\xff"), opens=False, repairable=True
    ),
    Stray(
        "descriptor is a JSON list", lambda r: _file(r / "lamina.json", b"[1]"), opens=False, repairable=True
    ),
    Stray("a stray file at the root", lambda r: _file(r / "notes.txt"), opens=True),
    Stray("a stray directory at the root", lambda r: _dir(r / ".Trash-0"), opens=True),
    Stray("txn is a file", lambda r: _file(r / "txn"), opens=False),
    # -- engine level
    Stray("a file where a dataset belongs", lambda r: _file(r / "kv" / "other"), opens=False),
    Stray("an odd name beside a dataset", lambda r: _dir(r / "kv" / "default (copy)"), opens=True),
    Stray("a renamed dataset", lambda r: _move(r / "kv" / "default", r / "kv" / "renamed"), opens=False),
    # -- dataset level
    Stray(
        "a segment renamed to another day",
        lambda r: _move(r / "kv" / "default" / SEG, r / "kv" / "default" / "seg-20231120"),
        opens=False,
    ),
    Stray(
        "a segment renamed out of the way",
        lambda r: _move(r / "kv" / "default" / SEG, r / "kv" / "default" / f"{SEG}.bak"),
        opens=True,
        rows=0,
    ),
    Stray(
        "a file where a segment belongs", lambda r: _file(r / "kv" / "default" / "seg-20231115"), opens=False
    ),
    Stray("a stray file in a dataset", lambda r: _file(r / "kv" / "default" / "README"), opens=True),
    Stray(
        "a file named like a dropped segment",
        lambda r: _file(r / "kv" / "default" / "seg-20200101.dropping"),
        opens=True,
    ),
    # -- segment level
    Stray("a renamed shard", lambda r: _move(_table(r), _table(r).parent / "shard-1"), opens=False),
    Stray("a stray file in a segment", lambda r: _file(_table(r).parent / "notes"), opens=True),
    # -- table level
    Stray("corrupt is a file", lambda r: _file(_table(r) / "corrupt"), opens=True),
    Stray("a file named like an unlisted part", lambda r: _file(_table(r) / "00000000000000ff"), opens=True),
    Stray("a directory named like a tmp file", lambda r: _dir(_table(r) / "x.tmp"), opens=True),
    Stray(
        "a directory named like the next manifest",
        lambda r: _dir(
            _table(r) / names.manifest_name(names.parse_manifest_name(_newest_manifest(r).name) + 1)
        ),
        opens=False,
    ),
    Stray(
        "a copy of a part under an odd name",
        lambda r: _copy(_part(r, 0), f"{_part(r, 0).name} (copy)"),
        opens=True,
    ),
    Stray("a part renamed by hand", lambda r: _renamed(_part(r, 0), f"{_part(r, 0).name}.old"), opens=False),
    Stray("a stray file in a table", lambda r: _file(_table(r) / "notes.txt"), opens=True),
    # -- part level: proven damage, the part is quarantined and the others are served
    Stray("a directory inside a part", lambda r: _dir(_part(r, 1) / "extra"), opens=True, rows=20),
    Stray(
        "metadata.json is a directory",
        lambda r: _replace_with_dir(_part(r, 1) / "metadata.json"),
        opens=True,
        rows=20,
    ),
    Stray(
        "a data file is a directory",
        lambda r: _replace_with_dir(_part(r, 1) / "values.bin"),
        opens=True,
        rows=20,
    ),
]


def _registry() -> Registry:
    r = Registry()
    r._add_engine(KV, "<test>")
    return r


def _build(root: Path) -> None:
    with open_kv_store(str(root)) as s:
        kv = s.engine("kv")
        for p in range(3):
            kv.write(kv_batch([b"k%d-%d" % (p, i) for i in range(10)], [T0 + p * 100 + i for i in range(10)]))
            kv.flush()


def _tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


@pytest.mark.parametrize("stray", CATALOGUE, ids=[s.name for s in CATALOGUE])
def test_a_stray_entry_is_served_around_or_refused_by_name_and_check_reports_it(
    tmp_path: Path, stray: Stray
) -> None:
    root = tmp_path / "store"
    _build(root)
    entry = stray.plant(root)
    before = _tree(root)
    report = check_store(str(root), registry=_registry())  # what an operator sees first
    flagged = [p for p in report.problems if p.needs_attention]
    assert not report.ok and flagged, f"check says OK about {stray.name}"
    text = " ".join(f"{p.table} {p.part} {p.file} {p.detail}" for p in flagged)
    assert entry in text, f"check does not name {entry!r}: {flagged}"
    assert _tree(root) == before, "check changed the store"
    if stray.opens:
        with open_kv_store(str(root)) as s:
            assert len(s.engine("kv").query()) == stray.rows
    else:
        with pytest.raises(LaminaError) as info:
            open_kv_store(str(root))
        assert entry in str(info.value), f"the refusal does not name {entry!r}: {info.value}"
        assert _tree(root) == before, "a refused open changed the store"
    if stray.repairable:
        repair_store(str(root), registry=_registry())
        with open_kv_store(str(root)) as s:
            assert len(s.engine("kv").query()) == ROWS
        assert check_store(str(root), registry=_registry()).ok


def test_the_catalogue_covers_every_level_of_the_store() -> None:
    assert len(CATALOGUE) >= 25
    assert {s.opens for s in CATALOGUE} == {True, False}


# -- unreadable entries, for a reader that is not root -------------------------------------------

_NOBODY = 65534
_OPEN_AS_NOBODY = """
import json, os, sys
from lamina.check import check_store
from lamina.plugins import Registry
from lamina.testing.kv import KV, open_kv_store
r = Registry(); r._add_engine(KV, "<test>")
# Once as root, so every module (and lazily imported ones) is loaded: root's home, where Python
# lives, is not readable for the user the process becomes next. A clean open writes nothing.
open_kv_store(sys.argv[1]).close()
check_store(sys.argv[1], registry=r)
os.setgid(65534); os.setuid(65534)
try:
    with open_kv_store(sys.argv[1]) as s:
        out = {"opened": len(s.engine("kv").query())}
except OSError as e:
    out = {"refused": type(e).__name__, "errno": e.errno, "message": str(e)}
rep = check_store(sys.argv[1], registry=r, deep=True)
out["check"] = [[p.severity.value, p.kind.value, p.part, p.detail] for p in rep.problems if p.needs_attention]
print(json.dumps(out))
"""


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop to another user"
)
@pytest.mark.parametrize("what", ["data file", "part directory", "manifest"])
def test_an_unreadable_entry_is_an_environment_error_for_a_non_root_reader(what: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="lamina-nobody-", dir="/tmp"))  # pytest's tmp is root-only
    try:
        _unreadable_entry(base, what)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unreadable_entry(base: Path, what: str) -> None:
    root = base / "store"
    _build(root)
    for p in [base, root, *root.rglob("*")]:
        shutil.chown(p, _NOBODY, _NOBODY)
    target = {
        "data file": _part(root, 1) / "values.bin",
        "part directory": _part(root, 1),
        "manifest": _newest_manifest(root),
    }[what]
    target.chmod(0)
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AS_NOBODY, str(root)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert got.get("refused") == "EnvironmentIOError" and got["errno"] == 13, got
    assert "not damage" in got["message"]
    assert not (_table(root) / "corrupt").exists(), "a part was quarantined for a permission"
    assert got["check"] and all(sev == "error" and kind == "environment" for sev, kind, *_ in got["check"]), (
        got
    )
    target.chmod(0o755 if target.is_dir() else 0o644)
    with open_kv_store(str(root)) as s:
        assert len(s.engine("kv").query()) == ROWS


def test_a_store_at_the_root_of_a_fresh_file_system_beside_lost_and_found(tmp_path: Path) -> None:
    """mkfs leaves lost+found at the root of an ext4 volume: a store may live right there
    (found by review: the adoption check refused it, and check flagged it forever)."""
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "lost+found").mkdir()
    with open_kv_store(str(tmp_path / "vol")) as s:
        s.engine("kv").write(kv_batch([b"a"], [T0]))
    assert check_store(str(tmp_path / "vol"), registry=_registry()).ok
