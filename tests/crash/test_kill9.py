"""Real kill -9 torture (issue 7 part 3) on the kv reference engine and the trace engine.

A forked writer is SIGKILLed at random moments and at named kill points around each fsync; after
every kill the store is reopened and checked against the batches the writer acknowledged. The
CI profile kills >= 1,000 times in total; LAMINA_TORTURE=long kills 10x more.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamina
from lamina.testing import figures
from lamina.testing.kv import KV, kv_batch
from lamina.testing.torture import TortureSpec, torture
from lamina_trace import Span
from lamina_trace.plugin import ENGINE as TRACE

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork() and SIGKILL"
)

T0 = 1_700_000_000_000_000_000
ROWS = 12


def _kv_batch(seq: int) -> dict[str, Any]:
    keys = [b"s%06d-%02d" % (seq, j) for j in range(ROWS)]
    return kv_batch(keys, [T0 + seq * 100 + j for j in range(ROWS)])


KV_SPEC = TortureSpec(
    engine=KV,
    make_batch=_kv_batch,
    batch_rows=lambda seq: ROWS,
    rows_of=lambda h: list(h.query()),
    seq_of=lambda row: int(row[0][1:7]),
)


def _trace_batch(seq: int) -> dict[str, list[Any]]:
    spans = [
        Span(
            trace_id=b"s%06d-t%02d" % (seq, j // 2),
            span_id=b"sp%d" % j,
            timestamp=T0 + seq * 100 + j,
            duration=10 + j,
            payload=b"payload-%d" % seq,
            tags={"service": f"svc-{j % 3}"},
        )
        for j in range(ROWS)
    ]
    return {
        f: [getattr(s, f) for s in spans]
        for f in ("trace_id", "span_id", "timestamp", "duration", "payload", "tags")
    }


TRACE_SPEC = TortureSpec(
    engine=TRACE,
    make_batch=_trace_batch,
    batch_rows=lambda seq: ROWS,
    rows_of=lambda h: list(h.query()),
    seq_of=lambda span: int(span.trace_id[1:7]),
)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when the machine has one. A kill -9 keeps the page cache, so what
    the kernel has accepted survives whether or not it reached the platter: the torture tests
    process-crash atomicity and the real recovery code, and tmpfs makes each fsync free, which
    buys many more kills per CI minute. Power loss is the simulator's job (crash.py)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="lamina-torture-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(("spec", "kills"), [(KV_SPEC, 600), (TRACE_SPEC, 400)], ids=["kv", "trace"])
def test_kill_minus_9_never_loses_an_acknowledged_batch(spec: TortureSpec, kills: int, workdir: Path) -> None:
    n = figures.scale(kills, kills * 10)
    report = torture(spec, workdir, kills=n, seed=7, max_delay_s=0.03)
    assert report.kills == n, report.problems[:5]
    assert report.named >= n // 2 - 1  # half of them at named kill points around a barrier
    assert report.acked > n // 4, "the writer rarely got a batch acknowledged: the kills prove little"
    assert report.lost_rows == 0 and report.quarantined == 0
    assert not report.problems, "\n".join(report.problems[:10])


def test_the_torture_oracle_notices_a_lost_acknowledged_batch(tmp_path: Path) -> None:
    """The checker is not vacuous: a batch acknowledged but absent is reported as lost."""
    from lamina.testing.torture import TortureReport, _check

    path = str(tmp_path / "store")
    with lamina.Store(path, registry=KV_SPEC.registry(), background=False) as s:
        s.engine("kv").write(_kv_batch(0))
        s.engine("kv").flush()
    report = TortureReport()
    problem = _check(KV_SPEC, path, sent=1, acked={0, 1}, report=report)
    assert problem is not None and "acknowledged batch 1 has 0/12 rows" in problem
    assert report.lost_rows == ROWS
