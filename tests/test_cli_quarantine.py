"""`lamina quarantine list|restore|drop` and `lamina salvage` end to end on a real directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

import lamina
from lamina.cli import app

T0 = 1_764_000_000_000_000_000


def _store_with_torn_part(path: Path) -> tuple[str, int]:
    """Three parts of 100 traces; the middle part's spans.bin loses its last 10 blocks."""
    with lamina.open(str(path), background=False) as s:
        tr = s.engine("trace")
        for k in range(3):
            n = 1000
            tr.write(
                {
                    "trace_id": [b"p%d-t%03d" % (k, i // 10) for i in range(n)],
                    "span_id": [b"s%04d" % i for i in range(n)],
                    "timestamp": [T0 + i for i in range(n)],
                    "duration": [5] * n,
                    "payload": [b"payload %d" % i for i in range(n)],
                    "tags": [{"service": f"svc{i % 3}"} for i in range(n)],
                }
            )
            tr.flush()
        t = tr.tables()[0]
        victim = sorted(t.live_parts, key=lambda h: h.name)[1]
        cut = int(victim.reader.blocks.entries["offset"][-10, 0])
        spans = Path(t.path) / victim.name / "spans.bin"
    os.truncate(spans, cut)  # exactly at a block boundary
    return victim.name, 3000


def test_list_salvage_drop_cycle(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "250"})
    part, total = _store_with_torn_part(tmp_path)
    r = runner.invoke(app, ["quarantine", "list", str(tmp_path)])
    assert r.exit_code == 0 and part in r.output and "size_mismatch" in r.output and "spans.bin" in r.output
    r = runner.invoke(app, ["quarantine", "restore", str(tmp_path), part])
    assert r.exit_code == 1 and "100 of 1000 rows fail verification" in r.output
    r = runner.invoke(app, ["quarantine", "drop", str(tmp_path), part])
    assert r.exit_code == 1 and "not salvaged" in r.output
    r = runner.invoke(app, ["salvage", str(tmp_path), part])
    assert r.exit_code == 0, r.output
    assert "900 of 1,000 rows recovered" in r.output and "100 rows lost (10 damaged block(s))" in r.output
    with lamina.open(str(tmp_path), background=False) as s:
        spans = s.engine("trace").query(start=T0, end=T0 + 10**9)
        assert len(spans) == total - 100
        assert len({(sp.trace_id, sp.span_id) for sp in spans}) == len(spans)
    r = runner.invoke(app, ["quarantine", "drop", str(tmp_path), part])
    assert r.exit_code == 0 and "dropped" in r.output
    r = runner.invoke(app, ["quarantine", "list", str(tmp_path)])
    assert r.exit_code == 0 and "no quarantined parts" in r.output
    r = runner.invoke(app, ["check", "--deep", "--json", str(tmp_path)])
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True


def test_unknown_part_is_a_clear_error(tmp_path: Path) -> None:
    _store_with_torn_part(tmp_path)
    r = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["salvage", str(tmp_path), "00000000000000ff"])
    assert r.exit_code == 1 and "matches no quarantined part" in r.output


def test_repair_command_rebuilds_a_damaged_manifest(tmp_path: Path) -> None:
    import lamina

    with lamina.open(str(tmp_path), background=False) as s:
        tr = s.engine("trace")
        for k in range(2):
            tr.write_rows(
                [
                    {
                        "trace_id": b"t%d" % k,
                        "span_id": b"s",
                        "timestamp": T0 + k,
                        "duration": 1,
                        "payload": b"",
                        "tags": {},
                    }
                ]
            )
            tr.flush()
        table = Path(tr.tables()[0].path)
    newest = max(table.glob("*.snp"))
    newest.write_bytes(newest.read_bytes().replace(b'"epoch"', b'"epocH"'))
    runner = CliRunner(env={"COLUMNS": "250"})
    r = runner.invoke(app, ["check", str(tmp_path)])
    assert r.exit_code == 1
    r = runner.invoke(app, ["repair", str(tmp_path)])
    assert r.exit_code == 0 and "lists 2 part(s)" in r.output, r.output
    with lamina.open(str(tmp_path), background=False) as s:
        assert len(s.engine("trace").query(start=T0, end=T0 + 10)) == 2
    r = runner.invoke(app, ["repair", str(tmp_path)])
    assert "nothing to repair" in r.output
