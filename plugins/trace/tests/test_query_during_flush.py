"""A query running while a flush is in progress must see every buffered span exactly once.

A real race is timing-dependent, so each test runs the "concurrent" query at one precise point of
the flush, from a hook on the core table (same thread, no lock held there), which makes the
interleaving deterministic.
"""

from __future__ import annotations

import pytest

from lamina.table import Table


@pytest.fixture
def one_flushed_one_buffered(traces, batch, t0):
    traces.write(batch([(b"t", b"1", t0 + 1, 1, b"", {})]))
    traces.flush()
    traces.write(batch([(b"t", b"2", t0 + 2, 1, b"", {})]))  # buffered; no memory view built yet
    return traces


def _ids(traces):
    return [s.span_id for s in traces.query(trace_ids=[b"t"])]


def test_a_query_from_inside_the_part_write_sees_every_span_once(one_flushed_one_buffered, monkeypatch):
    import lamina.table

    traces = one_flushed_one_buffered
    seen: list[list[bytes]] = []
    orig = lamina.table.write_mem_part

    def hooked(*args, **kwargs):
        seen.append(_ids(traces))  # the part being flushed is in the table's "flushing" list here
        return orig(*args, **kwargs)

    monkeypatch.setattr(lamina.table, "write_mem_part", hooked)
    traces.flush()
    assert seen == [[b"1", b"2"]]
    assert _ids(traces) == [b"1", b"2"]


def test_a_query_while_the_flush_builds_its_part_still_sees_the_buffered_span(
    one_flushed_one_buffered, monkeypatch
):
    """A query racing the part build waits for it or sees the committed part: never neither."""
    import threading
    import time

    traces = one_flushed_one_buffered
    seen: list[list[bytes]] = []
    orig = Table._memory_part
    threads: list[threading.Thread] = []

    def hooked(self, batches):
        if not threads:  # the flush building its memory part: a query starts "concurrently"
            t = threading.Thread(target=lambda: seen.append(_ids(traces)))
            threads.append(t)
            t.start()
            time.sleep(0.05)
        return orig(self, batches)

    monkeypatch.setattr(Table, "_memory_part", hooked)
    traces.flush()
    threads[0].join(10)
    assert seen == [[b"1", b"2"]]


def test_a_query_right_after_the_flush_commits_sees_each_span_once(one_flushed_one_buffered, monkeypatch):
    traces = one_flushed_one_buffered
    seen: list[list[bytes]] = []
    orig = Table._commit

    def hooked(self, add, remove, **kw):
        orig(self, add, remove, **kw)
        if add and not remove:  # a flush's commit
            seen.append(_ids(traces))

    monkeypatch.setattr(Table, "_commit", hooked)
    traces.flush()
    assert seen == [[b"1", b"2"]]


def test_a_flush_between_the_snapshot_and_the_memory_part_does_not_duplicate_spans(
    one_flushed_one_buffered, monkeypatch
):
    from lamina.snapshot import MemRows

    traces = one_flushed_one_buffered
    table = traces.tables()[0]
    orig = MemRows.acquire
    fired: list[int | None] = []

    def hooked(self, build):
        if not fired:
            fired.append(None)
            fired[0] = table.flush()  # "another thread" flushes right here
        return orig(self, build)

    monkeypatch.setattr(MemRows, "acquire", hooked)
    got = _ids(traces)
    assert fired and fired[0] is not None
    assert got == [b"1", b"2"]
