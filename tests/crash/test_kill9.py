"""Real kill -9 torture (issue 7 part 3) on the kv reference engine and the trace engine.

A forked writer is SIGKILLed at random moments and at named kill points around each fsync; after
every kill the store is reopened and checked against the batches the writer acknowledged. The
CI profile kills >= 1,000 times in total; LAMINA_TORTURE=long kills 10x more.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamina
from lamina.testing import figures
from lamina.testing.kv import KV, kv_batch
from lamina.testing.torture import ReferenceSpec, TortureSpec, calibrate, scratch_dir, torture
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
    with scratch_dir(tmp_path) as d:
        yield d


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
    problem = _check(KV_SPEC, KV_SPEC.judge(), path, sent=1, acked={0, 1}, report=report)
    assert problem is not None and "acknowledged batch 1 has 0/12 rows" in problem
    assert report.lost_rows == ROWS


REF_SPEC = ReferenceSpec(
    KV, [_kv_batch(seq) for seq in range(3)], lambda h: sorted(repr(r) for r in h.query())
)


def _store_with(path: str, seqs: list[int]) -> None:
    with lamina.Store(path, registry=REF_SPEC.registry(), background=False) as s:
        h = s.engine("kv")
        for seq in seqs:
            h.write(REF_SPEC.make_batch(seq))
            h.flush()


@pytest.mark.parametrize(
    ("present", "sent", "acked", "lost", "verdict"),
    [
        ([0, 1], 1, {0, 1}, 0, None),
        ([0], 1, {0}, 0, None),  # the unacknowledged in-flight batch may be absent...
        ([0, 1], 1, {0}, 0, None),  # ...or present in full
        ([0], 1, {0, 1}, ROWS, "12 expected rows are missing and 0 rows are unexpected"),
        ([0, 1, 2], 1, {0, 1}, 0, "0 expected rows are missing and 12 rows are unexpected"),
        ([0, 0], 0, {0}, 0, "0 expected rows are missing and 12 rows are unexpected"),
    ],
    ids=["all-acked", "in-flight-absent", "in-flight-present", "acked-lost", "never-sent", "duplicated"],
)
def test_the_reference_oracle_accepts_exactly_the_allowed_outcomes(
    tmp_path: Path, present: list[int], sent: int, acked: set[int], lost: int, verdict: str | None
) -> None:
    """`ReferenceSpec` (the contract's oracle, for engines whose rows carry no batch number)
    accepts the acknowledged batches plus, all or nothing, the one in flight; nothing else."""
    from lamina.testing.torture import TortureReport, _check

    path = str(tmp_path / "store")
    _store_with(path, present)
    report = TortureReport()
    problem = _check(REF_SPEC, REF_SPEC.judge(), path, sent=sent, acked=acked, report=report)
    if verdict is None:
        assert problem is None
    else:
        assert problem is not None and verdict in problem, problem
    assert report.lost_rows == lost


def test_the_reference_oracle_carries_its_verdict_to_the_next_kill(tmp_path: Path) -> None:
    """An in-flight batch judged absent must stay absent: if it shows up after a later kill, it
    was resurrected (a prefix of the log, never a reordering)."""
    from lamina.testing.torture import TortureReport, _check

    path = str(tmp_path / "store")
    judge = REF_SPEC.judge()
    _store_with(path, [0])
    assert _check(REF_SPEC, judge, path, sent=1, acked={0}, report=TortureReport()) is None
    _store_with(path, [1, 2])  # batch 1 appears after the kill that judged it absent
    problem = _check(REF_SPEC, judge, path, sent=2, acked={0, 2}, report=TortureReport())
    assert problem is not None and "12 rows are unexpected" in problem


def test_calibration_refuses_a_writer_that_never_acknowledges(tmp_path: Path) -> None:
    def broken(seq: int) -> dict[str, Any]:
        raise ValueError("no batch for you")

    spec = TortureSpec(engine=KV, make_batch=broken, batch_rows=lambda s: ROWS, rows_of=list, seq_of=int)
    with pytest.raises(
        RuntimeError,
        match="acknowledged 0 of 3 batches in 30 s \\(it exited: ValueError: no batch for you\\)",
    ):
        calibrate(spec, tmp_path)
    assert not (tmp_path / "calibration").exists()


def _measure_batch(p: int, version: int) -> dict[str, list[Any]]:
    hosts = range(p * 2, p * 2 + 4)
    return {
        "timestamp": [T0 + h for h in hosts],
        "version": [version] * 4,
        "cpu": [0.5] * 4,
        "mem": [1000 * h + version for h in hosts],
        "state": ["ok"] * 4,
        "tags": [{"host": f"h-{h}"} for h in hosts],
    }


def test_the_reference_oracle_finds_an_engine_that_hides_repeated_batches() -> None:
    """Measure keeps the highest version: sample batch 0 written again (as batch 3) changes
    nothing it serves, so the contract demands distinct batches (`torture_batch`)."""
    from lamina_measure.plugin import measure_engine

    MEASURE = measure_engine(entity=["host"], fields={"cpu": "float64", "mem": "int64", "state": "string"})
    batches = [_measure_batch(p, p) for p in range(3)]

    def rows(h: lamina.EngineHandle) -> list[Any]:
        res = h.query()
        return sorted(
            zip(res.series.tolist(), res.timestamp.tolist(), res.fields["mem"].tolist(), strict=True)
        )

    assert ReferenceSpec(MEASURE, batches, rows).blind_spot(6) == 3
    distinct = ReferenceSpec(MEASURE, batches, rows, lambda seq: _measure_batch(seq % 3, seq))
    assert distinct.blind_spot(6) is None
    assert REF_SPEC.blind_spot(6) is None  # kv keeps every batch written
