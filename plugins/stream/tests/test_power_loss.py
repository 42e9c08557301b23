"""Power loss across the file-system operations of stream flushes and a merge (SPEC §10 invariants
1, 2, 3, 6, 7), on SimFS: after every cut, reopening shows every acknowledged element exactly
once, nothing never written, only parts that validate completely (their tag filters included,
so a filtered query still finds every acknowledged match), no debris, never a quarantined part,
and a second recovery sees the same elements."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina import names
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing.fixtures import explore_crash_points
from lamina_stream import Eq
from lamina_stream.plugin import ENGINE

ROOT = "/db"
T0 = 1_700_000_000_000_000_000
Row = tuple[str, int, str]  # (element_id, timestamp, level)


def _batch(p: int) -> dict[str, Any]:
    n = 12
    return {
        "series": [{"service": f"svc-{(p + i) % 3}", "host": f"h{i % 2}"} for i in range(n)],
        "timestamp": [T0 + p * 100 + i for i in range(n)],
        "element_id": [f"p{p}-{i}" for i in range(n)],
        "tags": [{"level": "ERROR" if (p + i) % 5 == 0 else "INFO", "n": i} for i in range(n)],
    }


BATCHES = [_batch(p) for p in range(4)]


def _rows(b: dict[str, Any]) -> list[Row]:
    return [(e, t, g["level"]) for e, t, g in zip(b["element_id"], b["timestamp"], b["tags"], strict=True)]


ALL = {r for b in BATCHES for r in _rows(b)}


def _open(fs: SimFS) -> lamina.Store:
    return lamina.Store(ROOT, fs=fs, registry=Registry(), engines=[ENGINE], background=False)


def workload(fs: SimFS, acked: list[Row]) -> None:
    """Three flushes, a merge of the three parts, one more flush; acks after flush() returns."""
    s = _open(fs)
    h = s.engine("stream")
    for b in BATCHES[:3]:
        h.write(b)
        h.flush()
        acked.extend(_rows(b))
    h.merge_now(force=True)
    h.write(BATCHES[3])
    h.flush()
    acked.extend(_rows(BATCHES[3]))
    s.close()


def check(fs: SimFS, acked: list[Row], label: str) -> None:
    s = _open(fs)
    try:
        h = s.engine("stream")
        rows = [(e.element_id, e.timestamp, e.tags["level"]) for e in h.query()]
        for r in acked:
            assert rows.count(r) == 1, f"{label}: acknowledged {r} seen {rows.count(r)} times"
        assert len(rows) == len(set(rows)) and set(rows) <= ALL, f"{label}: duplicated or invented rows"
        errors = {e.element_id for e in h.query(where=Eq("level", "ERROR"))}
        assert errors == {r[0] for r in rows if r[2] == "ERROR"}, f"{label}: tag filter lost a match"
        for t in h.tables():
            for part in t.live_parts:
                part.reader.verify_all()  # frames, dictionaries and tags.tff against the values
        assert s.metrics.value("lamina_corrupt_parts_total") == 0, f"{label}: quarantined a part"
        for t in h.tables():
            live = {p.name for p in t.live_parts}
            for n in fs.listdir(t.path):
                if names.parse_manifest_name(n) is None:
                    assert n in live, f"{label}: debris {n} in {t.path}"
            for p in t.live_parts:
                assert not any(x.endswith(".tmp") for x in fs.listdir(posixpath.join(t.path, p.name)))
    finally:
        s.close()
    s2 = _open(fs)
    try:
        again = [(e.element_id, e.timestamp, e.tags["level"]) for e in s2.engine("stream").query()]
        assert again == rows, f"{label}: second recovery changed the elements"
    finally:
        s2.close()


def _ops(run: Callable[[SimFS, list[Row]], None]) -> int:
    fs = SimFS()
    run(fs, [])
    return fs.op_count


@pytest.mark.parametrize(("mode", "first", "stride"), [("power", 0, 3), ("torn", 1, 23), ("process", 2, 23)])
def test_crash_across_flush_and_merge_keeps_acknowledged_elements(mode: str, first: int, stride: int) -> None:
    """Every third operation for power loss, a sparser sweep for torn writes and process kills
    (the core's kv suite cuts at every operation; this one checks the stream layout and its
    tag filters, within the plugin suite's time budget)."""
    total = _ops(workload)
    assert total > 100  # the workload really does flushes and a merge
    assert explore_crash_points(workload, check, (mode,), stride=stride, start=first) > 3
