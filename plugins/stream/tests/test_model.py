"""Queries against a plain-Python model on random data (hypothesis): random elements written in
random flushes (some left unflushed, sometimes merged, across two daily segments), random filter
expressions (Eq / In / Range under And / Or), time ranges, order, limit and projection. The model
is a list of dicts and a filter evaluator written here, independent of the engine's own code."""

from __future__ import annotations

import itertools
import random
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import lamina
import lamina.format.part_writer as part_writer
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina_stream import And, Eq, Filter, Has, In, Or, QueryStats, Range, series_id
from lamina_stream.plugin import ENGINE

T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9
SERIES = [{"service": "api", "host": "h1"}, {"service": "api", "host": "h2"}, {"service": "db", "host": "h1"}]

tag_values = st.one_of(
    st.sampled_from(["INFO", "WARN", "ERROR", "200", ""]),
    st.integers(-3, 3),
    st.sampled_from([200, 500, -(2**63), 2**63 - 1]),
    st.sampled_from([b"", b"200", b"\x00"]),
    st.lists(st.sampled_from(["INFO", "x", "200"]), max_size=2).map(tuple),
)
TAGS = ["level", "code", "blob", "host"]
tag_dicts = st.dictionaries(st.sampled_from(["level", "code", "blob"]), tag_values, min_size=1, max_size=3)
elements = st.lists(
    st.tuples(st.integers(0, len(SERIES) - 1), st.integers(0, 40), st.booleans(), tag_dicts),
    min_size=8,
    max_size=60,
)
bound = st.sampled_from([-3, -1, 0, 2, 3, 200, 500])


def leaves() -> st.SearchStrategy[Filter]:
    tag = st.sampled_from(TAGS)
    return st.one_of(
        st.builds(Eq, tag, tag_values),
        st.builds(In, tag, st.lists(tag_values, max_size=3)),
        st.builds(Range, tag, st.none() | bound, st.none() | bound),
        st.builds(Has, tag, st.sampled_from(["INFO", "x", "200"])),
    )


def _compose(children: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
    terms = st.lists(children, min_size=1, max_size=3)
    return st.one_of(terms.map(And), terms.map(Or))


filters = st.recursive(leaves(), _compose, max_leaves=6)


def model_match(f: Filter, tags: dict[str, Any]) -> bool:
    """The reference meaning of a filter on one element's tags (typed equality)."""
    if isinstance(f, And):
        return all(model_match(t, tags) for t in f.terms)
    if isinstance(f, Or):
        return any(model_match(t, tags) for t in f.terms)
    if f.tag not in tags:  # type: ignore[attr-defined]
        return False
    v = tags[f.tag]  # type: ignore[attr-defined]
    if isinstance(f, Eq):
        return type(v) is type(f.value) and v == f.value
    if isinstance(f, In):
        return any(type(v) is type(w) and v == w for w in f.values)
    if isinstance(f, Has):
        return type(v) is tuple and f.item in v
    assert isinstance(f, Range)
    return type(v) is int and (f.ge is None or v >= f.ge) and (f.le is None or v <= f.le)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=elements,
    cuts=st.lists(st.integers(0, 40), max_size=3),
    merge=st.booleans(),
    flt=st.one_of(st.none(), filters, filters),
    start=st.none() | st.integers(-5, 30),
    end=st.none() | st.integers(10, 45),
    wide=st.booleans(),
    order=st.sampled_from(["asc", "desc"]),
    limit=st.none() | st.integers(0, 20),
    projection=st.none() | st.lists(st.sampled_from(TAGS), max_size=2),
)
def test_queries_match_the_model(
    rows: list[tuple[int, int, bool, dict[str, Any]]],
    cuts: list[int],
    merge: bool,
    flt: Filter | None,
    start: int | None,
    end: int | None,
    wide: bool,
    order: str,
    limit: int | None,
    projection: list[str] | None,
) -> None:
    model = []
    for i, (s, off, next_day, tags) in enumerate(rows):
        ts = T0 + off + (DAY if next_day else 0)
        model.append(
            {"sid": series_id(SERIES[s]), "ts": ts, "eid": f"e{i:03d}", "tags": {**tags, **SERIES[s]}}
        )
    store = lamina.Store("/s", fs=SimFS(), registry=Registry(), engines=[ENGINE], background=False)
    try:
        h = store.engine("stream")
        bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
        for k, (a, b) in enumerate(itertools.pairwise(bounds)):
            h.write(
                {
                    "series": [SERIES[rows[i][0]] for i in range(a, b)],
                    "timestamp": [model[i]["ts"] for i in range(a, b)],
                    "element_id": [model[i]["eid"] for i in range(a, b)],
                    "tags": [rows[i][3] for i in range(a, b)],
                }
            )
            if k < len(bounds) - 2 or merge:  # the last batch stays unflushed unless merging
                h.flush()
        if merge:
            h.merge_now()
        # a time range in the first day, or (wide) spanning both days
        lo = None if start is None else T0 + start
        hi = None if end is None else T0 + end + (DAY if wide else 0)
        got = h.query(start=lo, end=hi, where=flt, order=order, limit=limit, projection=projection)
    finally:
        store.close()
    want = [
        m
        for m in model
        if (lo is None or m["ts"] >= lo)
        and (hi is None or m["ts"] < hi)
        and (flt is None or model_match(flt, m["tags"]))
    ]
    want.sort(key=lambda m: (m["ts"], m["sid"], m["eid"]), reverse=order == "desc")
    if limit is not None:
        want = want[:limit]
    assert [(e.timestamp, e.series_id, e.element_id) for e in got] == [
        (m["ts"], m["sid"], m["eid"]) for m in want
    ]
    for e, m in zip(got, want, strict=True):
        tags = m["tags"] if projection is None else {t: v for t, v in m["tags"].items() if t in projection}
        assert {k: (type(v), v) for k, v in e.tags.items()} == {k: (type(v), v) for k, v in tags.items()}


def _random_filter(rng: random.Random, depth: int = 0) -> Filter:
    values: list[Any] = [
        "INFO",
        "WARN",
        "ERROR",
        "200",
        "",
        -3,
        -1,
        0,
        1,
        2,
        3,
        200,
        500,
        b"",
        b"200",
        ("x",),
    ]
    tag = rng.choice(TAGS)
    r = rng.random()
    if depth < 2 and r < 0.3:
        kids = [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]
        return And(kids) if rng.random() < 0.5 else Or(kids)
    if r < 0.4:
        return Eq(tag, rng.choice(values))
    if r < 0.55:
        return Has(tag, rng.choice(["x", "INFO", "y"]))
    if r < 0.8:
        return In(tag, rng.sample(values, rng.randint(0, 3)))
    ints = [-3, -1, 0, 1, 2, 3, 200, 500]
    return Range(tag, rng.choice([None, *ints]), rng.choice([None, *ints]))


@pytest.mark.parametrize("tiny", [False, True], ids=["default-blocks", "tiny-blocks-and-granules"])
def test_many_random_filters_on_one_store_match_the_model(
    tiny: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A denser check than the hypothesis test: 600 elements (three flushed parts merged, one
    flushed part, unflushed rows), 300 random queries, every one compared with the model. With
    `tiny`, blocks are cut at 7 rows and granules at 3 blocks, so a series spans many blocks and
    granules hold several series: row-to-block mapping, ordering and pruning across blocks."""
    engine = ENGINE
    if tiny:
        engine = attrs.evolve(ENGINE, schema=attrs.evolve(ENGINE.schema, block_max_rows=7))
        monkeypatch.setattr(part_writer, "DEFAULT_GRANULE_BLOCKS", 3)
    rng = random.Random(5)
    vals: list[Any] = ["INFO", "WARN", "ERROR", "200", -3, -1, 0, 1, 2, 3, 200, 500, b"", b"200"]
    vals += [("x",), ("x", "INFO"), (), ("y", "x")]
    model = []
    for i in range(600):
        s = rng.randrange(len(SERIES))
        tags = {t: rng.choice(vals) for t in ("level", "code", "blob") if rng.random() < 0.8}
        ts = T0 + rng.randrange(100) + (DAY if rng.random() < 0.2 else 0)
        model.append({"s": s, "sid": series_id(SERIES[s]), "ts": ts, "eid": f"e{i:03d}", "raw": tags})
    store = lamina.Store("/s", fs=SimFS(), registry=Registry(), engines=[engine], background=False)
    try:
        h = store.engine("stream")
        for k, (a, b) in enumerate(itertools.pairwise([0, 150, 300, 450, 550, 600])):
            h.write(
                {
                    "series": [SERIES[m["s"]] for m in model[a:b]],
                    "timestamp": [m["ts"] for m in model[a:b]],
                    "element_id": [m["eid"] for m in model[a:b]],
                    "tags": [m["raw"] for m in model[a:b]],
                }
            )
            if k < 4:
                h.flush()
            if k == 2:
                h.merge_now()
        shape = QueryStats()
        h.query(stats=shape)
        if tiny:  # the shape the test means to exercise
            assert shape.blocks_total >= 600 // 7 and shape.granules_read >= shape.blocks_total // 3
        checked = nonempty = 0
        for _ in range(300):
            flt = _random_filter(rng)
            lo = rng.choice([None, T0 + rng.randrange(100)])
            hi = rng.choice([None, T0 + rng.randrange(100), T0 + DAY + rng.randrange(100)])
            order = rng.choice(["asc", "desc"])
            limit = rng.choice([None, None, 1, 5, 40])
            got = h.query(start=lo, end=hi, where=flt, order=order, limit=limit)
            want = [
                m
                for m in model
                if (lo is None or m["ts"] >= lo)
                and (hi is None or m["ts"] < hi)
                and model_match(flt, {**m["raw"], **SERIES[m["s"]]})
            ]
            want.sort(key=lambda m: (m["ts"], m["sid"], m["eid"]), reverse=order == "desc")
            want = want[:limit] if limit is not None else want
            assert [e.element_id for e in got] == [m["eid"] for m in want], (flt, lo, hi, order, limit)
            checked += 1
            nonempty += bool(want)
        assert checked == 300 and nonempty > 150  # the queries are not vacuous
    finally:
        store.close()
