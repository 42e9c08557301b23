"""Power loss at every file-system operation of a versioned measure workload (SPEC §10: 1, 2, 6, 7).

Define a measure, flush points, flush higher versions of some of them, merge, flush lower versions
(which must lose), cut at operation k for every k; the disk after a power loss (only fsynced data
and directory entries survive) must reopen without quarantining anything and
answer exactly as a dict model of the acknowledged batches, plus possibly the one batch whose
flush was cut after its commit point. Never a superseded version, never half a batch.
"""

from __future__ import annotations

from typing import Any

import pytest

import lamina
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.plugins import Registry
from lamina_measure import series_id
from lamina_measure.plugin import ENGINE

ROOT = "/db"
T0 = 1_700_000_000_000_000_000
HOSTS = ["h1", "h2", "h3"]

# (host, ts offset, version, value)
BATCHES: list[list[tuple[str, int, int, int]]] = [
    [(h, k, 0, 10 * i + k) for i, h in enumerate(HOSTS) for k in range(4)],
    [("h1", 0, 1, 100), ("h2", 3, 2, 200), ("h3", 9, 0, 300)],
    [("h1", 0, 0, -1), ("h2", 3, 1, -2), ("h1", 1, 0, 111)],  # h1@1 v0 again: the later write wins
]


def _open(fs: SimFS) -> lamina.Store:
    return lamina.Store(ROOT, fs=fs, registry=Registry(), engines=[ENGINE], background=False)


def _batch(points: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    return {
        "timestamp": [T0 + p[1] * 1000 for p in points],
        "version": [p[2] for p in points],
        "value": [p[3] for p in points],
        "tags": [{"host": p[0]} for p in points],
    }


def workload(fs: SimFS, acked: list[int]) -> None:
    s = _open(fs)
    m = s.engine("measure")
    m.define("cpu", entity=["host"], fields={"value": "int64"})
    for i, b in enumerate(BATCHES):
        m.write(_batch(b), dataset="cpu")
        m.flush()
        acked.append(i)
        if i == 1:
            m.merge_now()
    s.close()


def model(n: int) -> list[tuple[int, int, int, int]]:
    """What a store holding the first n batches shows: (series, ts, version, value), sorted."""
    won: dict[tuple[int, int], tuple[int, int]] = {}
    for b in BATCHES[:n]:
        for host, k, v, val in b:
            key = (series_id([host]), T0 + k * 1000)
            if key not in won or v >= won[key][0]:
                won[key] = (v, val)
    return sorted((s, t, v, val) for (s, t), (v, val) in won.items())


def _ops() -> int:
    fs = SimFS()
    workload(fs, [])
    return fs.op_count


def test_crash_at_every_operation_keeps_exactly_the_acknowledged_versions() -> None:
    # power loss only: the strictest state (the core's own suite covers kills and torn writes
    # of the same commit protocol); ~190 cut points
    mode = "power"
    total = _ops()
    assert total > 30
    for k in range(total):
        fs = SimFS()
        fs.crash_at(k)
        acked: list[int] = []
        with pytest.raises(SimulatedCrash):
            workload(fs, acked)
        disk = fs.crash_state(mode)
        s = _open(disk)
        try:
            m = s.engine("measure")
            if m.options("cpu") is None:
                assert not acked, f"op {k}: the definition was lost"
                continue
            r = m.query(dataset="cpu")
            got = sorted(
                zip(
                    r.series.tolist(),
                    r.timestamp.tolist(),
                    r.version.tolist(),
                    r.fields["value"].tolist(),
                    strict=True,
                )
            )
            n = len(acked)
            assert got in (model(n), model(n + 1)), f"op {k} ({mode}): {got}"
            assert s.quarantined() == [], f"op {k}: a crash alone must not corrupt a part"
        finally:
            s.close()
