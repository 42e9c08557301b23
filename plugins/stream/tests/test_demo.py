"""`lamina demo` on the stream engine: the sample queries agree with what the demo generated,
also when the demo appends to a store that already holds an earlier run's lines."""

from __future__ import annotations

from collections.abc import Callable

import lamina
from lamina_stream.demo import demo
from lamina_stream.plugin import ENGINE

NOW = 1_700_000_000_000_000_000


def test_demo_writes_flushes_and_its_checked_queries_pass(open_store: Callable[..., lamina.Store]) -> None:
    h = open_store().engine("stream")
    progress: list[int] = []
    report = demo(h, rows=20_000, seed=3, now_ns=NOW, advance=progress.append)
    assert ENGINE.demo is demo
    assert report.rows == 20_000 == sum(progress) and report.flushes == 2
    assert len(report.queries) == 4
    assert all(q.ok for q in report.queries), report.queries
    # the checks are not vacuous: the 5-minute ERROR query and the slow query found lines
    assert int(report.queries[0].result) > 0 and int(report.queries[1].result) > 0
    assert len(h.query()) == 20_000


def test_demo_again_on_the_same_store_still_checks_out(open_store: Callable[..., lamina.Store]) -> None:
    h = open_store().engine("stream")
    first = demo(h, rows=3_000, seed=1, now_ns=NOW, advance=lambda n: None)
    second = demo(h, rows=3_000, seed=2, now_ns=NOW + 60 * 10**9, advance=lambda n: None)
    assert all(q.ok for q in first.queries + second.queries)
    assert len(h.query()) == 6_000


def test_a_wrong_answer_is_reported_not_hidden(open_store: Callable[..., lamina.Store]) -> None:
    """A demo query that disagrees with the generated data says ok=False (lamina demo exits 1)."""
    h = open_store().engine("stream")
    real = h.query

    def lossy(**kw: object) -> list[object]:
        return real(**kw)[1:]

    class Handle:
        def __getattr__(self, name: str) -> object:
            return lossy if name == "query" else getattr(h, name)

    report = demo(Handle(), rows=5_000, seed=4, now_ns=NOW, advance=lambda n: None)
    assert not all(q.ok for q in report.queries)


def test_two_runs_within_one_second_check_only_their_own_lines(
    open_store: Callable[..., lamina.Store],
) -> None:
    """Regression: the run ID was `seed-<seconds>`, so the CLI test's two quick demos on one
    directory (same seed, same second) shared it, and each query counted both runs' lines."""
    h = open_store().engine("stream")
    first = demo(h, rows=3_000, seed=42, now_ns=NOW, advance=lambda n: None)
    second = demo(h, rows=3_000, seed=42, now_ns=NOW + 10**6, advance=lambda n: None)
    bad = [q for q in first.queries + second.queries if not q.ok]
    assert not bad, bad
