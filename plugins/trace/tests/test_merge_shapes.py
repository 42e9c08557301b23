"""The part shapes BanyanDB's trace merge broke on, flushed, merged, re-merged and read back.

Every test compares typed span keys (`key_of_span`), never `Span ==`: a dict compares `True == 1`
and `200 == 200.0`, which would hide a tag whose type changed.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from lamina_trace import Span, TagFilter


def _reader(traces, i=0):
    return traces.tables()[0].live_parts[i].reader


def _granules_of(reader, trace_id: bytes) -> set[int]:
    bt = reader.blocks
    return {int(bt.granule_of[i]) for i in bt.find(trace_id)}


def _spans_in_part(reader) -> list[Span]:
    """Every span of one part, in stored order (block by block)."""
    out = []
    for i in range(len(reader.blocks.keys)):
        rows = reader.read_block(i)
        tags = rows["tags"]
        for j in range(len(rows["trace_id"])):
            out.append(
                Span(
                    rows["trace_id"][j],
                    rows["span_id"][j],
                    int(rows["timestamp"][j]),
                    int(rows["duration"][j]),
                    rows["payload"][j],
                    {t: c[j] for t, c in tags.items() if c[j] is not None},
                )
            )
    return out


# -- 1. empty payloads --------------------------------------------------------------------------


def test_spans_with_empty_payloads_survive_flush_merge_and_remerge(traces, batch, t0, key_of_span):
    first = [
        (b"mixed", b"m1", t0 + 1, 10, b"", {"svc": "web"}),
        (b"mixed", b"m2", t0 + 2, 11, b"not empty", {"svc": "web"}),
        (b"empty-only-here", b"e1", t0 + 3, 0, b"", {}),  # only in part 1: raw-copied by the merge
        (b"empty-shared", b"s1", t0 + 4, 1, b"", {"svc": "db"}),
    ]
    second = [
        (b"empty-shared", b"s2", t0 + 5, 2, b"", {"svc": "db"}),  # in both parts: decoded + re-encoded
        (b"mixed", b"m3", t0 + 6, 12, b"", {}),
    ]
    third = [(b"empty-shared", b"s3", t0 + 7, 3, b"", {})]
    traces.write(batch(first))
    traces.flush()
    traces.write(batch(second))
    traces.flush()
    want = {
        b"mixed": [first[0], first[1], second[1]],
        b"empty-only-here": [first[2]],
        b"empty-shared": [first[3], second[0], third[0]],
    }

    def check() -> None:
        for tid, spans in want.items():
            got = traces.query(trace_ids=[tid])
            assert [key_of_span(s) for s in got] == [key_of_span(Span(*s)) for s in spans]
            assert all(type(s.payload) is bytes for s in got)

    traces.write(batch(third))  # unflushed: read from the memory part
    check()
    traces.flush()
    assert traces.merge_now() == 1
    check()
    traces.write(batch([(b"empty-shared", b"s4", t0 + 8, 4, b"", {})]))
    want[b"empty-shared"].append((b"empty-shared", b"s4", t0 + 8, 4, b"", {}))
    traces.flush()
    assert traces.merge_now() == 1
    check()
    assert len(traces.tables()[0].live_parts) == 1
    assert _reader(traces).meta.rows == 8
    assert _reader(traces).verify_all() > 0


def test_a_part_made_only_of_empty_payloads_round_trips(traces, batch, t0, key_of_span):
    # One span per trace, every payload empty: the spans.bin frames carry IDs and no payload bytes.
    spans = [(b"t%03d" % i, b"s", t0 + i, i, b"", {}) for i in range(5)]
    traces.write(batch(spans))
    traces.flush()
    traces.write(batch([(b"t002", b"s2", t0 + 100, 1, b"", {})]))
    traces.flush()
    traces.merge_now()
    got = traces.query(start=t0, end=t0 + 1000)
    assert sorted(map(key_of_span, got)) == sorted(
        [key_of_span(Span(*s)) for s in spans] + [key_of_span(Span(b"t002", b"s2", t0 + 100, 1, b"", {}))]
    )
    assert [s.span_id for s in traces.query(trace_ids=[b"t002"])] == [b"s", b"s2"]


def test_enough_empty_payload_traces_to_train_a_dictionary_still_round_trip(traces, batch, t0, key_of_span):
    n = 250  # >= 200 blocks in the first flush: the table trains its zstd dictionary here
    empty = [(b"e%04d" % i, b"s", t0 + i, i, b"", {"k": i % 3}) for i in range(n)]
    traces.write(batch(empty))
    traces.flush()
    full = [
        (b"e%04d" % i, b"f", t0 + n + i, i, b'{"op":"GET /users/%d"}' % i * 4, {"k": "x"})
        for i in range(0, n, 7)
    ]
    traces.write(batch(full))
    traces.flush()
    traces.merge_now()
    got = traces.query()
    assert sorted(map(key_of_span, got)) == sorted(key_of_span(Span(*s)) for s in empty + full)
    assert [s.span_id for s in traces.query(trace_ids=[b"e0007"])] == [b"s", b"f"]


# -- 2. one trace straddling a granule boundary -------------------------------------------------


@pytest.fixture
def tiny_blocks(open_store, engine_with, tiny_granules):
    # 64 bytes: each ~60-byte span is a block of its own; 2 blocks per granule.
    return open_store(engine_with(64)).engine("trace")


def _big_trace(tid: bytes, tag: str, n: int, ts0: int) -> list[tuple]:
    return [
        (tid, b"%s-%02d" % (tag.encode(), i), ts0 + i, i, b"p" * 30, {"part": tag, "i": i}) for i in range(n)
    ]


def test_a_trace_straddling_granules_merges_and_remerges_with_every_span_once_in_order(
    tiny_blocks, batch, t0, key_of_span, open_store, engine_with
):
    traces = tiny_blocks
    part1 = [
        (b"aaa", b"a", t0, 1, b"x", {}),
        *_big_trace(b"big", "one", 9, t0 + 10),
        (b"zzz", b"z", t0, 1, b"", {}),
    ]
    traces.write(batch(part1))
    traces.flush()
    r1 = _reader(traces)
    assert len(r1.blocks.find(b"big")) == 9  # one block per span
    assert len(_granules_of(r1, b"big")) >= 4, "the trace must straddle several granules"
    assert r1.blocks.granule_of[r1.blocks.find(b"big")[0]] == 0  # it starts mid-granule, after "aaa"

    part2 = [*_big_trace(b"big", "two", 5, t0 + 100), (b"aaa", b"a2", t0 + 1, 1, b"", {})]
    traces.write(batch(part2))
    traces.flush()
    assert traces.merge_now() == 1
    merged = _reader(traces)
    assert merged.meta.granules >= 7
    want_big = [s for s in part1 + part2 if s[0] == b"big"]
    got = traces.query(trace_ids=[b"big"])
    assert [key_of_span(s) for s in got] == [key_of_span(Span(*s)) for s in want_big]
    assert len(_granules_of(merged, b"big")) >= 7

    part3 = _big_trace(b"big", "three", 4, t0 - 50)  # earlier than everything stored so far
    traces.write(batch(part3))
    traces.flush()
    first_merge = merged.meta.part_id
    assert traces.merge_now() == 1
    final = _reader(traces)
    assert len(traces.tables()[0].live_parts) == 1
    assert final.meta.lineage[0] == first_merge and len(final.meta.lineage) == 2
    want_big += part3
    got = traces.query(trace_ids=[b"big"])
    assert [key_of_span(s) for s in got] == [key_of_span(Span(*s)) for s in want_big]
    assert [key_of_span(s) for s in traces.query(trace_ids=[b"aaa", b"zzz"])] == [
        key_of_span(Span(*s)) for s in (part1[0], part2[-1], part1[-1])
    ]
    # every span exactly once in the part itself, and the blocks of "big" are contiguous
    stored = _spans_in_part(final)
    assert sorted(map(key_of_span, stored)) == sorted(key_of_span(Span(*s)) for s in part1 + part2 + part3)
    idx = list(final.blocks.find(b"big"))
    assert idx == list(range(idx[0], idx[0] + len(idx))) and len(idx) == len(want_big)
    assert final.verify_all() > 0
    # the time-range scan finds them through the granule index too
    scan = traces.query(start=t0 - 50, end=t0 + 1000, tags={"part": ["one", "two", "three"]})
    assert sorted(map(key_of_span, scan)) == sorted(key_of_span(Span(*s)) for s in want_big)
    # and the re-merged part validates on reopen and answers the same
    traces.store.close()
    again = open_store(engine_with(64)).engine("trace")
    assert [h.part_id for h in again.tables()[0].live_parts] == [final.meta.part_id]
    got = again.query(trace_ids=[b"big"])
    assert [key_of_span(s) for s in got] == [key_of_span(Span(*s)) for s in want_big]


def test_a_straddling_trace_present_in_one_input_only_is_copied_across_granules(
    tiny_blocks, batch, t0, key_of_span
):
    traces = tiny_blocks
    big = _big_trace(b"mmm", "solo", 7, t0)
    traces.write(batch([(b"aaa", b"1", t0, 1, b"", {"part": "x"}), *big]))
    traces.flush()
    # Same tag names in both parts (a tag missing from one input is test_merge_copies_a_block_...).
    traces.write(
        batch([(b"aaa", b"2", t0 + 1, 1, b"", {"part": 7, "i": "x"}), (b"zzz", b"3", t0 + 2, 1, b"", {})])
    )
    traces.flush()
    assert traces.merge_now() == 1
    r = _reader(traces)
    assert len(_granules_of(r, b"mmm")) >= 3
    assert [key_of_span(s) for s in traces.query(trace_ids=[b"mmm"])] == [key_of_span(Span(*s)) for s in big]
    # tag codes of the copied blocks were remapped into the merged dictionary
    assert [s.tags["i"] for s in traces.query(tags={"part": "solo"})] == list(range(7))
    assert [s.span_id for s in traces.query(tags={"part": 7})] == [b"2"]


@pytest.mark.parametrize("tagless_first", [True, False])
def test_merge_copies_a_block_from_a_part_lacking_a_tag_other_inputs_have(traces, batch, t0, tagless_first):
    with_tag = [(b"a", b"1", t0 + 1, 1, b"", {"svc": "web"})]
    without = [(b"b", b"2", t0 + 2, 1, b"", {})]
    for spans in (without, with_tag) if tagless_first else (with_tag, without):
        traces.write(batch(spans))
        traces.flush()
    assert traces.merge_now() == 1
    assert len(traces.tables()[0].live_parts) == 1
    assert [(s.span_id, s.tags) for s in traces.query()] == [(b"1", {"svc": "web"}), (b"2", {})]
    assert [s.span_id for s in traces.query(tags={"svc": "web"})] == [b"1"]


# -- 3. one tag, different types in different parts ---------------------------------------------


def _typed(spans):
    return [(s.span_id, {k: (type(v), v) for k, v in s.tags.items()}) for s in spans]


@pytest.mark.parametrize("merge", [False, True], ids=["before-merge", "after-merge"])
def test_a_tag_with_different_types_in_different_parts_keeps_each_type(traces, batch, t0, merge):
    traces.write(
        batch(
            [
                (b"t1", b"str", t0 + 1, 1, b"", {"status": "200", "flag": True}),
                (b"t2", b"str2", t0 + 2, 1, b"", {"status": "200", "flag": False}),
            ]
        )
    )
    traces.flush()
    traces.write(
        batch(
            [
                (b"t1", b"int", t0 + 3, 1, b"", {"status": 200, "flag": 1}),  # t1 in both parts: re-encoded
                (b"t3", b"int3", t0 + 4, 1, b"", {"status": 200, "flag": 0}),  # t3 in one part: copied
                (b"t3", b"float", t0 + 5, 1, b"", {"status": 200.0}),
            ]
        )
    )
    traces.flush()
    if merge:
        assert traces.merge_now() == 1
        assert len(traces.tables()[0].live_parts) == 1
    assert _typed(traces.query()) == [
        (b"str", {"status": (str, "200"), "flag": (bool, True)}),
        (b"str2", {"status": (str, "200"), "flag": (bool, False)}),
        (b"int", {"status": (int, 200), "flag": (int, 1)}),
        (b"int3", {"status": (int, 200), "flag": (int, 0)}),
        (b"float", {"status": (float, 200.0)}),
    ]

    def ids(**tags):
        return [s.span_id for s in traces.query(tags=tags)]

    assert ids(status=200) == [b"int", b"int3"]
    assert ids(status="200") == [b"str", b"str2"]
    assert ids(status=200.0) == [b"float"]
    assert ids(flag=True) == [b"str"]
    assert ids(flag=1) == [b"int"]
    assert ids(flag=False) == [b"str2"]
    assert ids(flag=0) == [b"int3"]
    assert ids(status=["200", 404]) == [b"str", b"str2"]
    assert ids(status=TagFilter("status", lambda v: type(v) is int)) == [b"int", b"int3"]
    assert [type(s.tags["status"]) for s in traces.query(trace_ids=[b"t1"])] == [str, int]


def test_mixed_tag_types_merge_when_one_part_stores_the_tag_plain(traces, batch, t0, monkeypatch):
    import lamina.format.tags
    import lamina.merge.merger

    # More distinct values than MAX_DICT: the tag is stored PLAIN (typed values per granule).
    monkeypatch.setattr(lamina.format.tags, "MAX_DICT", 2)
    monkeypatch.setattr(lamina.merge.merger, "MAX_DICT", 2)
    traces.write(
        batch([(b"p", b"%d" % i, t0 + i, 1, b"", {"code": v}) for i, v in enumerate(["1", 1, True, 1.0])])
    )
    traces.flush()
    assert _reader(traces).tag_mode("code")[1] is None  # PLAIN
    traces.write(batch([(b"q", b"q", t0 + 10, 1, b"", {"code": 1})]))
    traces.flush()
    traces.merge_now()
    assert [(type(s.tags["code"]), s.tags["code"]) for s in traces.query()] == [
        (str, "1"),
        (int, 1),
        (bool, True),
        (float, 1.0),
        (int, 1),
    ]
    assert [s.span_id for s in traces.query(tags={"code": 1})] == [b"1", b"q"]
    assert [s.span_id for s in traces.query(tags={"code": True})] == [b"2"]


# -- 4. many tiny parts in one pass -------------------------------------------------------------


def test_forty_tiny_parts_merge_in_one_pass_without_losing_or_duplicating_a_span(
    traces, batch, t0, key_of_span
):
    rng = random.Random(40)
    written: list[tuple] = []
    ids = []
    for p in range(40):
        spans = [
            (
                b"trace-%d" % rng.randrange(8),
                b"%d-%d" % (p, k),
                t0 + rng.randrange(10_000),
                rng.randrange(100),
                rng.choice([b"", b"x", b"payload %d" % p]),
                rng.choice([{}, {"p": p}, {"svc": rng.choice(["a", "b"])}]),
            )
            for k in range(rng.randint(1, 3))
        ]
        written += spans
        traces.write(batch(spans))
        ids += traces.flush()
    assert len(ids) == 40 == len(traces.tables()[0].live_parts)
    before = sorted(map(key_of_span, traces.query()))
    assert before == sorted(key_of_span(Span(*s)) for s in written)
    per_trace = {t: [s.span_id for s in traces.query(trace_ids=[t])] for t in {s[0] for s in written}}

    assert traces.merge_now() == 1
    parts = traces.tables()[0].live_parts
    assert len(parts) == 1
    meta = parts[0].reader.meta
    assert sorted(meta.lineage) == sorted(ids)
    assert meta.rows == len(written)
    assert sorted(map(key_of_span, traces.query())) == before
    assert {t: [s.span_id for s in traces.query(trace_ids=[t])] for t in per_trace} == per_trace
    for t, spans in per_trace.items():  # per trace: write order
        assert spans == [s[1] for s in written if s[0] == t]
    # the 40 inputs are retired and their directories removed: one part directory is left
    table = Path(traces.tables()[0].path)
    assert [p.name for p in table.iterdir() if p.is_dir() and p.name != "corrupt"] == [f"{meta.part_id:016x}"]


# -- 5. out-of-order timestamps inside a trace --------------------------------------------------


def test_out_of_order_timestamps_keep_write_order_and_correct_time_bounds(traces, batch, t0, key_of_span):
    writes = [
        [(b"ooo", b"a", t0 + 1000, 1, b"", {}), (b"ooo", b"b", t0 + 500, 1, b"", {})],
        [(b"ooo", b"c", t0 + 2000, 1, b"", {}), (b"other", b"x", t0 + 700, 1, b"", {})],
        [(b"ooo", b"d", t0 + 10, 1, b"", {})],  # earlier than the trace's first span
        [(b"ooo", b"e", t0 + 1500, 1, b"", {}), (b"ooo", b"f", t0 + 5, 1, b"", {})],
    ]
    flush_after = {1, 3}
    parts_spans: list[list[tuple]] = [[]]
    for k, w in enumerate(writes):
        traces.write(batch(w))
        parts_spans[-1] += w
        if k in flush_after:
            traces.flush()
            parts_spans.append([])
    parts_spans.pop()
    live = sorted(traces.tables()[0].live_parts, key=lambda h: h.part_id)
    assert len(live) == 2
    for h, spans in zip(live, parts_spans, strict=True):
        r = h.reader
        ts = [s[2] for s in spans]
        assert (r.meta.min_ts, r.meta.max_ts) == (min(ts), max(ts))
        stored = _spans_in_part(r)
        assert [s.span_id for s in stored if s.trace_id == b"ooo"] == [s[1] for s in spans if s[0] == b"ooo"]
        bt = r.blocks
        for i in range(len(bt.keys)):
            block_ts = [s[2] for s in spans if s[0] == bt.keys[i]]
            assert (int(bt.min_ts[i]), int(bt.max_ts[i])) == (min(block_ts), max(block_ts))

    all_spans = [s for w in writes for s in w]
    ooo = [s[1] for s in all_spans if s[0] == b"ooo"]
    assert (
        [s.span_id for s in traces.query(trace_ids=[b"ooo"])] == ooo == [b"a", b"b", b"c", b"d", b"e", b"f"]
    )
    early = traces.query(start=t0, end=t0 + 100)
    assert [s.span_id for s in early] == [b"f", b"d"]  # sorted by timestamp, before the trace's start
    assert [s.span_id for s in traces.query(start=t0 + 600, end=t0 + 1001)] == [b"x", b"a"]

    traces.merge_now()
    r = _reader(traces)
    assert (r.meta.min_ts, r.meta.max_ts) == (t0 + 5, t0 + 2000)
    assert [s.span_id for s in traces.query(trace_ids=[b"ooo"])] == ooo
    assert [s.span_id for s in traces.query(start=t0, end=t0 + 100)] == [b"f", b"d"]
    assert [s.span_id for s in traces.query(start=t0 + 1001)] == [b"e", b"c"]
    bt = r.blocks
    i = bt.find(b"ooo")[0]
    assert (int(bt.min_ts[i]), int(bt.max_ts[i])) == (t0 + 5, t0 + 2000)


def test_granule_time_bounds_let_a_scan_find_an_early_span_in_a_late_granule(tiny_blocks, batch, t0):
    traces = tiny_blocks
    # "a..." traces fill the first granules with late timestamps; the last trace holds the earliest span.
    spans = [(b"a%02d" % i, b"s", t0 + 10_000 + i, 1, b"p" * 40, {}) for i in range(6)]
    spans.append((b"zz", b"early", t0 + 1, 1, b"p" * 40, {}))
    traces.write(batch(spans))
    traces.flush()
    r = _reader(traces)
    g = r.blocks.granule_of[r.blocks.find(b"zz")[0]]
    assert g > 0 and int(r.index.granules["min_ts"][g]) == t0 + 1
    assert int(np.min(r.index.granules["min_ts"][:g])) >= t0 + 10_000
    assert [s.span_id for s in traces.query(start=t0, end=t0 + 2)] == [b"early"]
