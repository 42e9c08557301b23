"""Trace queries against a plain-Python model, plus the edges of each query argument."""

from __future__ import annotations

import tempfile
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
import lamina.format.part_writer as part_writer
import lamina.format.tags as tag_format
import lamina.merge.merger as merger
from lamina_trace import Span, TagFilter
from lamina_trace.plugin import ENGINE

T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9


def skey(s: Span) -> tuple[Any, ...]:
    tags = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in s.tags.items()))
    return (s.trace_id, s.span_id, s.timestamp, s.duration, s.payload, tags)


# -- the model ----------------------------------------------------------------------------------


def model_by_trace_ids(written: list[Span], trace_ids: list[bytes]) -> list[Span]:
    return [s for t in trace_ids for s in written if s.trace_id == t]


def _cond_ok(v: Any, want: Any) -> bool:
    if isinstance(want, TagFilter):
        return bool(want.predicate(v))
    if isinstance(want, list):
        return any(v == a and type(v) is type(a) for a in want)
    return v == want and type(v) is type(want)


def model_by_time_range(
    written: list[Span], start: int | None, end: int | None, tags: dict[str, Any], limit: int | None
) -> list[Span]:
    out = [
        s
        for s in written
        if (start is None or s.timestamp >= start)
        and (end is None or s.timestamp < end)
        and all(name in s.tags and _cond_ok(s.tags[name], want) for name, want in tags.items())
    ]
    out.sort(key=lambda s: s.timestamp)
    return out if limit is None else out[:limit]


# -- strategies ---------------------------------------------------------------------------------

TAG_NAMES = ["svc", "status", "flag", "k8s/pod"]
STRS = st.sampled_from(["web", "db", "200", "", "wé"])
INTS = st.sampled_from([0, 1, 200, 404, -7])
FLOATS = st.sampled_from([1.0, 200.0, 2.5])
TAG_VALUES = st.one_of(STRS, INTS, st.booleans(), FLOATS)
TRACE_POOL = [b"a", b"a\x00", b"b", b"\xff", b"trace-1", b"T" * 64]
TRACE_IDS = st.one_of(st.sampled_from(TRACE_POOL), st.binary(min_size=1, max_size=3))

PREDICATES = {
    "str-starting-w": lambda v: isinstance(v, str) and v.startswith("w"),
    "int-at-least-200": lambda v: type(v) is int and v >= 200,
    "truthy": bool,
    "anything": lambda v: True,
}


@st.composite
def workloads(draw: st.DrawFn) -> dict[str, Any]:
    """Writes of 1-4 spans with unique timestamps, each followed by nothing, a flush, or a flush
    and a policy merge; then an optional final flush."""
    n_writes = draw(st.integers(1, 7))
    sizes = [draw(st.integers(1, 4)) for _ in range(n_writes)]
    offsets = draw(st.lists(st.integers(0, 50_000), min_size=sum(sizes), max_size=sum(sizes), unique=True))
    it = iter(offsets)
    writes = []
    for n in sizes:
        spans = []
        for k in range(n):
            tags = draw(st.dictionaries(st.sampled_from(TAG_NAMES), TAG_VALUES, max_size=4))
            if k == 0:
                # Every part gets every tag name: merging a part that lacks a tag another input has
                # crashes today (see test_merge_copies_a_block_from_a_part_lacking_a_tag_other_inputs_have).
                tags = {name: tags.get(name, draw(TAG_VALUES)) for name in TAG_NAMES}
            spans.append(
                Span(
                    trace_id=draw(TRACE_IDS),
                    span_id=draw(st.binary(min_size=1, max_size=3)),
                    timestamp=T0 + next(it),
                    duration=draw(st.integers(0, 10**9)),
                    payload=draw(st.one_of(st.just(b""), st.binary(max_size=40))),
                    tags=tags,
                )
            )
        writes.append((spans, draw(st.sampled_from(["none", "flush", "flush+merge"]))))
    return {
        "writes": writes,
        "tiny_blocks": draw(st.booleans()),
        "granule_blocks": draw(st.sampled_from([1, 3, part_writer.DEFAULT_GRANULE_BLOCKS])),
        # a tiny dictionary limit stores tags PLAIN (typed values per granule) instead of DICT
        "max_dict": draw(st.sampled_from([1, tag_format.MAX_DICT])),
        "final": draw(st.sampled_from(["none", "flush", "merge"])),
    }


def _in_list(draw: st.DrawFn) -> list[Any]:
    # One numeric type per list: an IN-list mixing bool/int/float hits the bug in
    # test_in_list_matches_by_value_and_type_together.
    numeric = draw(st.sampled_from([INTS, st.booleans(), FLOATS]))
    return draw(st.lists(st.one_of(STRS, numeric), max_size=3))


@st.composite
def range_queries(draw: st.DrawFn) -> dict[str, Any]:
    bound = st.one_of(st.none(), st.integers(-10, 50_010).map(lambda x: T0 + x))
    conds: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(TAG_NAMES), unique=True, max_size=2)):
        kind = draw(st.sampled_from(["eq", "in", "filter"]))
        if kind == "eq":
            conds[name] = draw(TAG_VALUES)
        elif kind == "in":
            conds[name] = _in_list(draw)
        else:
            conds[name] = TagFilter(name, PREDICATES[draw(st.sampled_from(sorted(PREDICATES)))])
    return {
        "start": draw(bound),
        "end": draw(bound),
        "tags": conds,
        "limit": draw(st.one_of(st.none(), st.integers(0, 8))),
    }


def _check_queries(traces: lamina.EngineHandle, written: list[Span], data: st.DataObject) -> None:
    known = list(dict.fromkeys(s.trace_id for s in written))
    ids = data.draw(
        st.lists(st.sampled_from([*known, b"missing"]), unique=True, max_size=4), label="trace_ids"
    )
    got = traces.query(trace_ids=ids)
    assert [skey(s) for s in got] == [skey(s) for s in model_by_trace_ids(written, ids)]
    for _ in range(3):
        q = data.draw(range_queries(), label="range query")
        got = traces.query(**q)
        want = model_by_time_range(written, q["start"], q["end"], q["tags"], q["limit"])
        assert [skey(s) for s in got] == [skey(s) for s in want]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=workloads(), data=st.data())
def test_queries_agree_with_a_python_model_over_random_workloads(monkeypatch, w, data):
    monkeypatch.setattr(part_writer, "DEFAULT_GRANULE_BLOCKS", w["granule_blocks"])
    monkeypatch.setattr(tag_format, "MAX_DICT", w["max_dict"])
    monkeypatch.setattr(merger, "MAX_DICT", w["max_dict"])

    engine = (
        attrs.evolve(ENGINE, schema=attrs.evolve(ENGINE.schema, block_max_bytes=48))
        if w["tiny_blocks"]
        else ENGINE
    )
    written: list[Span] = []
    with tempfile.TemporaryDirectory() as d, lamina.Store(d, engines=[engine], background=False) as store:
        traces = store.engine("trace")
        for spans, after in w["writes"]:
            assert traces.write(
                {
                    "trace_id": [s.trace_id for s in spans],
                    "span_id": [s.span_id for s in spans],
                    "timestamp": [s.timestamp for s in spans],
                    "duration": [s.duration for s in spans],
                    "payload": [s.payload for s in spans],
                    "tags": [s.tags for s in spans],
                }
            ) == len(spans)
            written += spans
            if after != "none":
                traces.flush()
            if after == "flush+merge":
                traces.merge_now(force=False)
        _check_queries(traces, written, data)
        if w["final"] != "none":
            traces.flush()
        if w["final"] == "merge":
            traces.merge_now()
            assert len(traces.tables()[0].live_parts) == 1
        everything = traces.query()
        assert sorted(map(skey, everything)) == sorted(map(skey, written))
        for h in traces.tables()[0].live_parts:
            assert h.reader.verify_all() > 0  # every frame's checksum and decoding
        _check_queries(traces, written, data)


# -- explicit edges -----------------------------------------------------------------------------


@pytest.fixture
def loaded(traces, batch, t0) -> lamina.EngineHandle:
    """Three spans in two parts and one buffered (every query must see all four). Each part holds
    both tag names: see test_merge_copies_a_block_from_a_part_lacking_a_tag_other_inputs_have."""
    traces.write(
        batch(
            [
                (b"t1", b"a", t0 + 10, 1, b"", {"svc": "web", "status": 200}),
                (b"t2", b"b", t0 + 30, 2, b"", {"svc": "db"}),
            ]
        )
    )
    traces.flush()
    traces.write(batch([(b"t1", b"c", t0 + 20, 3, b"", {"svc": "web", "status": "200"})]))
    traces.flush()
    traces.write(batch([(b"t3", b"d", t0 + 40, 4, b"", {"status": 404, "svc": "cron"})]))
    return traces


def _ids(spans: list[Span]) -> list[bytes]:
    return [s.span_id for s in spans]


def test_time_range_is_start_inclusive_end_exclusive_and_sorted_by_timestamp(loaded, t0):
    assert _ids(loaded.query(start=t0 + 10, end=t0 + 30)) == [b"a", b"c"]
    assert _ids(loaded.query(start=t0 + 11, end=t0 + 41)) == [b"c", b"b", b"d"]
    assert _ids(loaded.query(start=t0 + 30)) == [b"b", b"d"]
    assert _ids(loaded.query(end=t0 + 20)) == [b"a"]
    assert _ids(loaded.query()) == [b"a", b"c", b"b", b"d"]
    assert loaded.query(start=t0 + 30, end=t0 + 30) == []
    assert loaded.query(start=t0 + 50, end=t0 + 10) == []


def test_limit_keeps_the_earliest_matching_spans(loaded, t0):
    assert _ids(loaded.query(limit=2)) == [b"a", b"c"]
    assert loaded.query(limit=0) == []
    assert _ids(loaded.query(limit=99)) == [b"a", b"c", b"b", b"d"]
    assert _ids(loaded.query(tags={"svc": "web"}, limit=1)) == [b"a"]


def test_tag_conditions_need_the_tag_present_and_all_must_hold(loaded):
    assert _ids(loaded.query(tags={"svc": "web"})) == [b"a", b"c"]
    assert _ids(loaded.query(tags={"svc": "web", "status": 200})) == [b"a"]
    assert _ids(loaded.query(tags={"svc": ["db", "web"]})) == [b"a", b"c", b"b"]
    assert _ids(loaded.query(tags={"status": [404, "200"]})) == [b"c", b"d"]
    assert loaded.query(tags={"svc": []}) == []
    assert loaded.query(tags={"no-such-tag": "x"}) == []
    assert loaded.query(tags={"svc": None}) == []


def test_a_tag_filter_predicate_sees_typed_present_values_only(loaded):
    seen: list[Any] = []

    def pred(v: Any) -> bool:
        seen.append(v)
        return isinstance(v, int) and v >= 300

    assert _ids(loaded.query(tags={"status": TagFilter("status", pred)})) == [b"d"]
    assert seen and None not in seen
    assert {type(v) for v in seen} == {int, str}


def test_lookup_by_trace_ids_groups_traces_in_the_order_asked(loaded):
    assert _ids(loaded.query(trace_ids=[b"t3", b"t1"])) == [b"d", b"a", b"c"]
    assert _ids(loaded.query(trace_ids=[b"t1"])) == [b"a", b"c"]  # write order, not timestamp order
    assert loaded.query(trace_ids=[b"nope", b"t"]) == []
    assert loaded.query(trace_ids=[]) == []
    loaded.merge_now()
    assert _ids(loaded.query(trace_ids=[b"t3", b"t1"])) == [b"d", b"a", b"c"]


def test_lookup_after_merge_reads_each_trace_from_one_part(loaded):
    loaded.flush()
    loaded.merge_now()
    [h] = loaded.tables()[0].live_parts
    assert list(h.reader.blocks.find(b"t1")) == [0]
    assert h.reader.may_contain(b"t1") and not h.reader.may_contain(b"t0")
    assert _ids(loaded.query(trace_ids=[b"t1", b"t2"])) == [b"a", b"c", b"b"]


def test_a_time_range_spanning_two_segments_returns_both_sorted(traces, batch, t0):
    traces.write(batch([(b"x", b"late", t0 + DAY + 1, 1, b"", {}), (b"y", b"early", t0 + 5, 1, b"", {})]))
    traces.flush()
    traces.write(batch([(b"x", b"mid", t0 + DAY - 1, 1, b"", {})]))
    assert len(traces.tables()) == 2
    assert _ids(traces.query(start=t0, end=t0 + 2 * DAY)) == [b"early", b"mid", b"late"]
    assert _ids(traces.query(start=t0 + DAY)) == [b"late"]
    assert _ids(traces.query(start=t0 + 6, end=t0 + DAY)) == [b"mid"]


# -- bugs -------------------------------------------------------------------------------------


def test_in_list_matches_by_value_and_type_together(traces, batch, t0):
    traces.write(
        batch(
            [
                (b"t", b"int1", t0 + 1, 1, b"", {"x": 1}),
                (b"t", b"true", t0 + 2, 1, b"", {"x": True}),
                (b"t", b"float1", t0 + 3, 1, b"", {"x": 1.0}),
                (b"t", b"int2", t0 + 4, 1, b"", {"x": 2}),
            ]
        )
    )
    traces.flush()
    assert _ids(traces.query(tags={"x": [True, 2]})) == [b"true", b"int2"]
    assert _ids(traces.query(tags={"x": [1, True]})) == [b"int1", b"true"]
    assert _ids(traces.query(tags={"x": [1.0, 2]})) == [b"float1", b"int2"]


def test_an_unbounded_time_range_returns_a_span_at_the_largest_timestamp(traces, batch):
    top = 2**63 - 1
    traces.write(batch([(b"t", b"max", top, 1, b"", {})]))
    assert _ids(traces.query(trace_ids=[b"t"])) == [b"max"]  # stored and found by ID
    assert _ids(traces.query()) == [b"max"]
    assert _ids(traces.query(start=top - 1)) == [b"max"]


def test_lookup_of_a_trace_spanning_two_segments_is_ordered_by_segment_then_write_order(traces, batch, t0):
    """The documented contract: a trace's spans come segment by segment (time order), each in
    write order; the order does not change when a buffer is flushed."""

    def one(sid: bytes, ts: int) -> None:
        traces.write(batch([(b"q", sid, ts, 1, b"", {})]))

    for i in range(3):  # the first day's table allocates part IDs 1..3 to other traces
        traces.write(batch([(b"filler", b"%d" % i, t0 + i, 1, b"", {})]))
        traces.flush()
    one(b"1", t0 + DAY + 1)
    traces.flush()  # second day: part 1
    one(b"2", t0 + 10)
    traces.flush()  # first day: part 4
    one(b"3", t0 + DAY + 2)
    before_flush = _ids(traces.query(trace_ids=[b"q"]))
    traces.flush()  # second day: part 2
    assert _ids(traces.query(trace_ids=[b"q"])) == before_flush == [b"2", b"1", b"3"]


def test_asking_for_a_trace_id_twice_returns_its_spans_once(traces, batch, t0):
    traces.write(batch([(b"t", b"1", t0, 1, b"", {}), (b"t", b"2", t0 + 1, 1, b"", {})]))
    assert _ids(traces.query(trace_ids=[b"t", b"t"])) == [b"1", b"2"]


def test_the_model_tells_1_true_1_0_and_str_1_apart(t0):
    """Guards the model itself: it must distinguish 1, True, 1.0 and "1" as the engine does."""
    spans = [Span(b"t", b"%d" % i, t0 + i, 0, b"", {"x": v}) for i, v in enumerate([1, True, 1.0, "1"])]
    assert _ids(model_by_time_range(spans, None, None, {"x": 1}, None)) == [b"0"]
    assert _ids(model_by_time_range(spans, None, None, {"x": [True, "1"]}, None)) == [b"1", b"3"]
    assert _ids(model_by_time_range(spans, None, None, {"x": TagFilter("x", lambda v: v == 1)}, 2)) == [
        b"0",
        b"1",
    ]
    assert _ids(model_by_trace_ids([*spans, Span(b"u", b"u", t0, 0, b"", {})], [b"u", b"t"]))[0] == b"u"


def test_write_order_survives_a_merge_of_older_parts_after_a_newer_flush(traces, batch, t0):
    for i in range(3):
        traces.write(batch([(b"w", b"%d" % i, t0 + i, 1, b"", {})]))
        traces.flush()
    table = traces.tables()[0]
    oldest_two = sorted(h.part_id for h in table.live_parts)[:2]
    assert table.merge(oldest_two) is not None  # the output gets the highest ID, older data
    assert _ids(traces.query(trace_ids=[b"w"])) == [b"0", b"1", b"2"]
