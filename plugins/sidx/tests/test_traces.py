"""sidx as trace's secondary index: index rules, the coupled flush, and "slowest 20 traces of
service X in the last hour" going sidx -> trace, checked against a model of what was written."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina_sidx.plugin import ENGINE as SIDX
from lamina_sidx.traces import IndexedTraces, IndexRule, series_of
from lamina_trace.plugin import ENGINE as TRACE

T0 = 1_700_000_000_000_000_000
HOUR = 3600 * 10**9
RULES = [IndexRule("duration", key="duration", series_tag="service"), IndexRule("start", key="timestamp")]


def spans(rng: random.Random, traces: int, *, t_lo: int, t_hi: int, first: int = 0) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        c: [] for c in ("trace_id", "span_id", "timestamp", "duration", "payload", "tags")
    }
    for t in range(first, first + traces):
        start = rng.randrange(t_lo, t_hi)
        for s in range(rng.randrange(1, 5)):
            cols["trace_id"].append(b"tr-%06d" % t)
            cols["span_id"].append(b"sp-%d" % s)
            cols["timestamp"].append(start + s * 1000)
            cols["duration"].append(rng.randrange(1, 10**6))
            cols["payload"].append(b"{}")
            cols["tags"].append({"service": f"svc-{rng.randrange(4)}"} if rng.random() < 0.9 else {})
    return cols


@pytest.fixture
def store(open_store: Callable[..., lamina.Store]) -> lamina.Store:
    return open_store(TRACE, SIDX)


def _model_slowest(
    written: list[dict[str, list[Any]]], service: str, start: int, end: int, limit: int
) -> list[tuple[bytes, int]]:
    best: dict[bytes, int] = {}
    for b in written:
        for tid, ts, d, tags in zip(b["trace_id"], b["timestamp"], b["duration"], b["tags"], strict=True):
            if tags.get("service") == service and start <= ts < end:
                best[tid] = max(best.get(tid, -1), d)
    # desc by key; equal keys by trace ID descending (entries order by content, reversed)
    return sorted(best.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:limit]


def test_slowest_traces_of_a_service_in_the_last_hour_go_through_the_index(store: lamina.Store) -> None:
    rng = random.Random(5)
    it = IndexedTraces(store, RULES)
    written = []
    for i in range(4):
        b = spans(rng, 300, t_lo=T0, t_hi=T0 + 3 * HOUR, first=i * 300)
        it.write(b)
        written.append(b)
        if i < 3:
            it.flush()
    store.engine("sidx").merge_now()
    now = T0 + 3 * HOUR
    for svc in ("svc-0", "svc-3"):
        got = it.slowest(svc, start=now - HOUR, end=now, limit=20)
        want = _model_slowest(written, svc, now - HOUR, now, 20)
        assert [(t.trace_id, t.key) for t in got] == want
        for t in got:  # whole traces come back
            assert t.spans and all(s.trace_id == t.trace_id for s in t.spans)
            assert max(s.duration for s in t.spans if s.tags.get("service") == svc) == t.key


def test_every_span_is_indexed_once_per_rule(store: lamina.Store) -> None:
    rng = random.Random(2)
    it = IndexedTraces(store, RULES)
    b = spans(rng, 200, t_lo=T0, t_hi=T0 + HOUR)
    it.write(b)
    it.flush()
    by_start = store.engine("sidx").query(dataset="default.start")
    assert sorted((e.data, e.key) for e in by_start) == sorted(
        zip(b["trace_id"], b["timestamp"], strict=True)
    )
    by_dur = store.engine("sidx").query(dataset="default.duration")
    want = sorted(
        (t, d, series_of(g["service"]))
        for t, d, g in zip(b["trace_id"], b["duration"], b["tags"], strict=True)
        if "service" in g
    )
    assert sorted((e.data, e.key, e.series) for e in by_dur) == want


def test_one_flush_commits_trace_and_index_parts_together(store: lamina.Store) -> None:
    it = IndexedTraces(store, RULES)
    it.write(spans(random.Random(1), 50, t_lo=T0, t_hi=T0 + HOUR))
    # any member's flush flushes the whole group
    pids = store.engine("trace").flush()
    assert len(pids) == 3
    for engine, dataset in [("trace", "default"), ("sidx", "default.duration"), ("sidx", "default.start")]:
        (t,) = store.engine(engine).tables(dataset)
        assert len(t.live_parts) == 1 and t.pending_rows == 0
    assert not store.fs.listdir(store.path + "/txn")  # the intent is gone once complete


def test_bad_span_batch_buffers_nothing_in_trace_or_index(store: lamina.Store) -> None:
    it = IndexedTraces(store, RULES)
    b = spans(random.Random(1), 5, t_lo=T0, t_hi=T0 + HOUR)
    b["duration"][3] = -1
    with pytest.raises(lamina.InvalidInputError) as ei:
        it.write(b)
    assert ei.value.field == "duration"
    assert all(t.pending_rows == 0 for e in ("trace", "sidx") for t in store.engine(e).tables())


def test_index_entries_of_a_missing_trace_are_skipped(store: lamina.Store) -> None:
    it = IndexedTraces(store, RULES)
    b = spans(random.Random(4), 30, t_lo=T0, t_hi=T0 + HOUR)
    it.write(b)
    it.flush()
    # an entry whose trace is gone (as after a shorter trace retention), slower than every other
    store.engine("sidx").write(
        {
            "series": [series_of("svc-1")],
            "key": [10**9],
            "timestamp": [T0 + 5],
            "data": [b"gone"],
            "tags": [{"service": "svc-1"}],
        },
        dataset="default.duration",
    )
    got = it.slowest("svc-1", start=T0, end=T0 + HOUR, limit=5)
    assert b"gone" not in [t.trace_id for t in got]
    assert [(t.trace_id, t.key) for t in got] == _model_slowest([b], "svc-1", T0, T0 + HOUR, 5)


def test_a_dataset_cannot_join_two_flush_groups(store: lamina.Store) -> None:
    IndexedTraces(store, RULES)
    assert IndexedTraces(store, RULES).group is not None  # the same group again is fine
    with pytest.raises(lamina.InvalidInputError):
        IndexedTraces(store, [IndexRule("other", key="duration")])


def test_ties_at_the_limit_are_settled_by_trace_id_not_by_storage_order(store: lamina.Store) -> None:
    rng = random.Random(9)
    it = IndexedTraces(store, RULES)
    written = []
    for i in range(3):
        b = spans(rng, 150, t_lo=T0, t_hi=T0 + HOUR, first=i * 150)
        b["duration"] = [rng.choice([5, 6, 7]) for _ in b["duration"]]  # hundreds of ties
        it.write(b)
        it.flush()
        written.append(b)
    for limit in (1, 20, 70):
        got = it.slowest("svc-2", start=T0, end=T0 + HOUR, limit=limit)
        assert [(t.trace_id, t.key) for t in got] == _model_slowest(written, "svc-2", T0, T0 + HOUR, limit)


def test_the_background_flush_commits_trace_and_index_members(tmp_path: Any) -> None:
    import time

    store = lamina.Store(str(tmp_path / "bg"), engines=[TRACE, SIDX], flush_interval_s=0.05)
    try:
        it = IndexedTraces(store, RULES)
        b = spans(random.Random(8), 40, t_lo=T0, t_hi=T0 + HOUR)
        it.write(b)
        deadline = time.monotonic() + 10
        tables = lambda: [t for e in ("trace", "sidx") for t in store.engine(e).tables()]  # noqa: E731
        # the group is flushed as one: every table gets its part (3 tables: trace + 2 indexes)
        while (
            not (len(tables()) == 3 and all(t.live_parts for t in tables())) and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert all(t.pending_rows == 0 and len(t.live_parts) == 1 for t in tables())
        assert len(store.engine("sidx").query(dataset="default.start")) == len(b["trace_id"])
    finally:
        store.close()
