"""The `lamina` command end to end: engines, demo, check (and check's read-only promise)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lamina
from lamina.check import Kind, NotAStoreError, Severity, check_store
from lamina.cli import TraceWorkload, app
from lamina.plugins import Registry

# No colours, no terminal-width surprises: assertions read plain text.
SIDX_DEMO_DATASET = "demo"  # lamina_sidx.demo.DATASET (lamina-sidx may not be installed)

runner = CliRunner(env={"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "NO_COLOR": "1", "COLUMNS": "160"})


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


# -- helpers ----------------------------------------------------------------------------------
def make_store(path: Path, *, spans: int = 900, batch: int = 300, seed: int = 7) -> Path:
    """A small trace store with one part per batch (no merge)."""
    with lamina.open(str(path), background=False) as store:
        traces = store.engine("trace")
        for b in TraceWorkload(seed, spans, time.time_ns()).batches(batch):
            traces.write(b)
            traces.flush()
    return path


def part_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("trace/*/seg-*/shard-*/*") if p.is_dir() and len(p.name) == 16)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> 'dir' or the SHA-256 of its content."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


# -- engines ----------------------------------------------------------------------------------
def test_engines_lists_trace_with_its_distribution() -> None:
    r = invoke("engines")
    assert r.exit_code == 0, r.output
    line = next(line for line in r.stdout.splitlines() if " trace " in line)
    assert "lamina-trace" in line
    assert "0.1.0" in line
    assert "failed to load" not in r.output


def test_engines_reports_a_plugin_that_fails_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import lamina.plugins

    real = lamina.plugins.entry_points(group=lamina.plugins.GROUP)
    broken = EntryPoint(name="broken", value="lamina_no_such_module_xyz", group=lamina.plugins.GROUP)
    monkeypatch.setattr(lamina.plugins, "entry_points", lambda group: [*real, broken])
    r = invoke("engines")
    assert r.exit_code == 0, r.output
    assert "lamina-trace" in r.output  # the healthy engine is still listed
    line = next(line for line in r.output.splitlines() if "broken" in line)
    assert "failed to load" in line and "ModuleNotFoundError" in line


def test_engines_via_the_console_module_in_a_subprocess() -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    p = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "engines"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "trace" in p.stdout
    assert "lamina-trace" in p.stdout


def test_subprocess_check_exit_codes(tmp_path: Path, store: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lamina.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run("check", str(store)).returncode == 0
    (tmp_path / "plain").mkdir()
    bad = run("check", str(tmp_path / "plain"))
    assert bad.returncode == 2
    assert "not a Lamina store" in bad.stderr


# -- demo -------------------------------------------------------------------------------------
def test_demo_small_then_again_on_the_same_directory(tmp_path: Path) -> None:
    d = tmp_path / "lamina-data"
    r = invoke("demo", str(d), "--spans", "3000", "--batch", "1000", "--rows", "3000")
    assert r.exit_code == 0, r.output
    assert "no damage" in r.output
    assert "parts before merge" in r.output
    assert "query check failed" not in r.output
    first = check_store(str(d), deep=True)
    assert first.ok
    assert sum(t.rows for t in first.tables if t.engine == "trace") == 3000
    if any(t.engine == "sidx" for t in first.tables):  # the demo indexes span durations per service
        assert "slowest 20 payment traces" in " ".join(r.output.split())
        # one index entry per span (every demo span has a service)
        # (the sidx engine's own demo writes its entries into another dataset)
        trace_index = [t for t in first.tables if t.engine == "sidx" and t.dataset != SIDX_DEMO_DATASET]
        assert sum(t.rows for t in trace_index) == 3000

    r2 = invoke("demo", str(d), "--spans", "3000", "--batch", "1000", "--rows", "3000")
    assert r2.exit_code == 0, r2.output
    assert "appending to 3,000 spans" in r2.output
    assert "no damage" in r2.output
    second = check_store(str(d), deep=True)
    assert second.ok
    assert sum(t.rows for t in second.tables if t.engine == "trace") == 6000


def _kv_with_demo(*, wrong: bool = False, broken: bool = False) -> lamina.Engine:
    """The kv reference engine with a demo, as a third-party engine would declare one."""
    import attrs

    from lamina.testing.kv import KV, kv_batch

    def demo(handle, *, rows, seed, now_ns, advance):  # type: ignore[no-untyped-def]
        if broken:
            raise RuntimeError("demo blew up")
        keys = [b"k%05d" % i for i in range(rows)]
        for lo in range(0, rows, 500):
            chunk = keys[lo : lo + 500]
            handle.write(kv_batch(chunk, [now_ns + i for i in range(len(chunk))]))
            handle.flush()
            advance(len(chunk))
        handle.merge_now()
        got = len(handle.query())
        want = got + 1 if wrong else rows
        q = lamina.DemoQuery("every key", f"{got} rows", str(want), 0.1, ok=got == want)
        return lamina.DemoReport(rows=rows, unit="rows", flushes=-(-rows // 500), queries=(q,))

    return attrs.evolve(KV, demo=demo)


@pytest.mark.parametrize("variant", ["ok", "wrong", "broken"])
def test_demo_runs_every_engine_that_declares_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    import lamina.cli as cli
    from lamina.plugins import load_registry

    def registry() -> Registry:
        reg = load_registry()
        reg._add_engine(_kv_with_demo(wrong=variant == "wrong", broken=variant == "broken"), "kv-demo 0")
        return reg

    monkeypatch.setattr(cli, "_load_registry", registry)
    d = tmp_path / "data"
    r = invoke("demo", str(d), "--spans", "600", "--batch", "300", "--rows", "1200", "--no-deep")
    assert "kv: sample queries" in r.output or variant == "broken", r.output
    if variant == "ok":
        assert r.exit_code == 0, r.output
        assert "1,200 rows in" in r.output
    elif variant == "wrong":
        assert r.exit_code == 1
        assert "query check failed: kv: every key: 1200 rows, expected 1201" in r.output
    else:
        assert r.exit_code == 1
        assert "kv demo failed: RuntimeError: demo blew up" in r.output


def test_demo_refuses_a_non_empty_directory_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    r = invoke("demo", str(tmp_path), "--spans", "100")
    assert r.exit_code == 2
    assert not (tmp_path / "lamina.json").exists()


def test_workload_is_deterministic_given_the_seed() -> None:
    def first_batch(seed: int) -> dict:
        return next(TraceWorkload(seed, 500, 10**18).batches(500))

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert a == b
    assert a["trace_id"] != c["trace_id"]
    assert len(a["trace_id"][0]) == 16 and len(a["span_id"][0]) == 8
    assert all(200 <= len(p) <= 500 for p in a["payload"])
    assert all(10**18 - 3600 * 10**9 <= t <= 10**18 for t in a["timestamp"])
    assert {type(v) for v in a["tags"]["http.status_code"]} == {int}
    assert {type(v) for v in a["tags"]["error"]} == {bool}
    assert len(a["tags"]) == 8


# -- check ------------------------------------------------------------------------------------
def test_check_clean_store_exits_0(store: Path) -> None:
    r = invoke("check", str(store))
    assert r.exit_code == 0, r.output
    assert "OK" in r.output and "no damage" in r.output
    report = check_store(str(store))
    assert report.ok and report.problems == []
    assert report.parts_checked == 3 and report.frames_checked == 0
    deep = check_store(str(store), deep=True)
    assert deep.ok and deep.frames_checked > 0


def test_check_truncated_data_file_exits_1_naming_part_file_and_reason(store: Path) -> None:
    part = part_dirs(store)[1]
    spans = part / "spans.bin"
    size = spans.stat().st_size
    with spans.open("r+b") as f:
        f.truncate(size // 2)
    r = invoke("check", str(store))
    assert r.exit_code == 1, r.output
    line = next(line for line in r.output.splitlines() if line.startswith("DAMAGE "))
    assert part.name in line and "spans.bin" in line and "size_mismatch" in line
    assert f"expected {size}, got {size // 2}" in line

    report = check_store(str(store))
    (p,) = report.damage
    assert (p.kind, p.part, p.file, p.reason) == (Kind.CORRUPT_PART, part.name, "spans.bin", "size_mismatch")
    assert not report.ok


def test_flipped_byte_is_found_by_deep_check_only(store: Path) -> None:
    part = part_dirs(store)[0]
    spans = part / "spans.bin"
    size = spans.stat().st_size
    flip_middle_byte(spans)
    assert spans.stat().st_size == size

    # Documents the difference: the cheap check verifies sizes and index checksums, not frames.
    shallow = invoke("check", str(store))
    assert shallow.exit_code == 0, shallow.output

    r = invoke("check", "--deep", str(store))
    assert r.exit_code == 1, r.output
    line = next(line for line in r.output.splitlines() if line.startswith("DAMAGE "))
    assert part.name in line and "spans.bin" in line and "checksum" in line
    (p,) = check_store(str(store), deep=True).damage
    assert p.reason == "checksum" and p.file == "spans.bin" and p.offset >= 0


def test_check_on_a_directory_that_is_not_a_store_exits_2(tmp_path: Path) -> None:
    r = invoke("check", str(tmp_path))
    assert r.exit_code == 2
    assert "not a Lamina store" in r.output
    assert invoke("check", str(tmp_path / "missing")).exit_code == 2
    with pytest.raises(NotAStoreError):
        check_store(str(tmp_path))


def test_check_does_not_modify_the_store(store: Path) -> None:
    parts = part_dirs(store)
    table = parts[0].parent
    with (parts[0] / "spans.bin").open("r+b") as f:  # damaged: the store would quarantine it
        f.truncate(10)
    flip_middle_byte(parts[1] / "spans.bin")
    shutil.copytree(parts[2], table / "00000000000000ff")  # unlisted: the store would remove it
    (table / "0000000000000099.snp.tmp").write_bytes(b"half a manifest")  # the store would remove it
    before = snapshot(store)

    r1, r2 = invoke("check", str(store)), invoke("check", "--deep", str(store))
    assert r1.exit_code == 1 and r2.exit_code == 1
    assert snapshot(store) == before

    kinds = {p.kind for p in check_store(str(store), deep=True).problems}
    assert {Kind.CORRUPT_PART, Kind.UNLISTED_PART, Kind.TMP_FILE} <= kinds
    assert snapshot(store) == before

    # ...whereas opening the store does repair it: the check really did see work to do.
    with lamina.open(str(store), background=False):
        pass
    assert snapshot(store) != before
    assert not (table / "00000000000000ff").exists()


def test_quarantined_part_is_a_warning_not_damage(store: Path) -> None:
    part = part_dirs(store)[0]
    with (part / "spans.bin").open("r+b") as f:
        f.truncate(100)
    with lamina.open(str(store), background=False):  # recovery quarantines it
        pass
    assert (part.parent / "corrupt" / part.name / "reason.json").exists()
    r = invoke("check", str(store))
    assert r.exit_code == 0, r.output
    report = check_store(str(store))
    (q,) = [p for p in report.problems if p.kind is Kind.QUARANTINED]
    assert q.severity is Severity.WARNING
    assert q.part == part.name and q.reason == "size_mismatch" and q.file == "spans.bin"
    assert "quarantined" in r.output and "size_mismatch" in r.output


def test_missing_listed_part_is_damage(store: Path) -> None:
    part = part_dirs(store)[2]
    shutil.rmtree(part)
    r = invoke("check", str(store))
    assert r.exit_code == 1
    assert "missing_part" in r.output and part.name in r.output


def test_damaged_newest_manifest_is_damage(store: Path) -> None:
    table = part_dirs(store)[0].parent
    newest = max(table.glob("*.snp"))
    newest.write_bytes(newest.read_bytes().replace(b'"parts"', b'"partz"'))
    r = invoke("check", str(store))
    assert r.exit_code == 1
    assert "corrupt_manifest" in r.output and newest.name in r.output


def test_tables_of_an_engine_not_installed_are_skipped_not_damage(store: Path) -> None:
    report = check_store(str(store), registry=Registry())
    assert report.ok
    assert report.parts_checked == 0
    assert [t.status for t in report.tables] == ["skipped: engine not installed"]
    assert [p.kind for p in report.problems] == [Kind.ENGINE_NOT_INSTALLED]


def test_check_json_output(store: Path) -> None:
    r = invoke("check", "--json", str(store))
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["parts_checked"] == 3
    assert data["tables"][0]["engine"] == "trace"


def test_check_while_another_writer_flushes_and_merges_reports_no_damage(store: Path) -> None:
    """Parts retired (merged away and deleted) under the check are not damage."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            with lamina.open(str(store), background=False) as s:
                traces = s.engine("trace")
                work = TraceWorkload(99, 10**9, time.time_ns())
                for b in work.batches(100):
                    if stop.is_set():
                        break
                    traces.write(b)
                    traces.flush()
                    if len(traces.tables()[0].live_parts) >= 4:
                        traces.merge_now()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        reports = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            reports.append(check_store(str(store), deep=len(reports) % 2 == 1))
    finally:
        stop.set()
        t.join()
    assert not errors
    assert len(reports) >= 4
    assert all(r.ok for r in reports), [r.damage + r.errors for r in reports if not r.ok]
    assert check_store(str(store), deep=True).ok
