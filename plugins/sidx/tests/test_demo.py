"""The sidx demo writes what it says, and its checked queries agree with what it generated."""

from __future__ import annotations

import lamina
from lamina_sidx.plugin import ENGINE


def test_demo_writes_flushes_and_its_queries_check_out(sidx: lamina.EngineHandle) -> None:
    progress: list[int] = []
    now = 1_700_000_000_000_000_000
    report = ENGINE.demo(sidx, rows=25_000, seed=3, now_ns=now, advance=progress.append)  # type: ignore[misc]
    assert report.rows == 25_000 and sum(progress) == 25_000
    assert report.flushes == 3  # every 10k entries
    assert report.queries and all(q.ok for q in report.queries), report.queries
    assert len(sidx.query(dataset="demo")) == 25_000
    # appending a second run keeps both runs' checks exact (they filter on the run tag)
    again = ENGINE.demo(sidx, rows=5_000, seed=4, now_ns=now + 1, advance=lambda n: None)  # type: ignore[misc]
    assert all(q.ok for q in again.queries)
    assert len(sidx.query(dataset="demo")) == 30_000


def test_demo_queries_would_notice_a_wrong_answer(sidx: lamina.EngineHandle) -> None:
    """A query check that cannot fail proves nothing: with entries missing, ok turns False."""
    from lamina_sidx import demo as d

    written = d._entries(__import__("random").Random(1), 2000, 10**18, 0)
    sidx.write(
        {
            "series": [d.series_of(e[0]) for e in written[:1000]],
            "key": [e[1] for e in written[:1000]],
            "timestamp": [e[2] for e in written[:1000]],
            "data": [e[3] for e in written[:1000]],
            "tags": {"endpoint": [e[0] for e in written[:1000]], "run": ["r"] * 1000},
        },
        dataset=d.DATASET,
    )
    assert not d._band(sidx, written, "r").ok
    assert not d._slowest(sidx, written, "r", 10**18).ok
