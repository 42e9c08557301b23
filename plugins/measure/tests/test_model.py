"""Queries checked against a plain-Python model on random data (hypothesis).

Random points over a few series and a handful of timestamps in two daily segments, so
(series, timestamp) collisions and equal versions are common, are written in random chunks with
flushes and merges in between.
The model is a dict (series, timestamp) -> the winning point (highest version, then the later
write); every query and aggregate must agree with it, whatever was flushed or merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina_measure import series_id
from lamina_measure.plugin import ENGINE

T0 = 1_700_000_000_000_000_000
HOSTS = [("a", 1), ("a", 2), ("b", 1), ("c", 7)]

DAY = 86_400 * 10**9


def ts_of(k: int) -> int:
    """Timestamp of offset k: offsets 6 and up fall in the next daily segment (another table), so
    queries and the version rule work across tables too. Monotonic, so ranges map to ranges."""
    return T0 + k * 1000 + (DAY if k >= 6 else 0)


point = st.tuples(
    st.integers(0, len(HOSTS) - 1),  # series
    st.integers(0, 7),  # timestamp offset
    st.integers(0, 2),  # version
    st.integers(-50, 50),  # value
    st.sampled_from(["x", "y"]),  # a non-entity tag
)
step = st.one_of(
    st.lists(point, min_size=1, max_size=12).map(lambda ps: ("write", ps)),
    st.just(("flush", None)),
    st.just(("merge", None)),
)


def _apply(steps: list[tuple[str, Any]]) -> tuple[lamina.Store, dict[tuple[int, int], tuple]]:
    store = lamina.Store("/m", fs=SimFS(), registry=Registry(), engines=[ENGINE], background=False)
    h = store.engine("measure")
    h.define("m", entity=["app", "shard"], fields={"value": "int64", "ratio": "float64"})
    model: dict[tuple[int, int], tuple] = {}
    for kind, ps in steps:
        if kind == "flush":
            h.flush()
        elif kind == "merge":
            h.merge_now()
        else:
            h.write(
                {
                    "timestamp": [ts_of(p[1]) for p in ps],
                    "version": [p[2] for p in ps],
                    "value": [p[3] for p in ps],
                    "ratio": [p[3] / 4 for p in ps],
                    "tags": [{"app": HOSTS[p[0]][0], "shard": HOSTS[p[0]][1], "color": p[4]} for p in ps],
                },
                dataset="m",
            )
            for p in ps:
                key = (series_id(HOSTS[p[0]]), ts_of(p[1]))
                old = model.get(key)
                if old is None or p[2] >= old[0]:  # equal version: the later write wins
                    model[key] = (p[2], p[3], p[4])
    return store, model


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, min_size=1, max_size=8),
    pick=st.sets(st.integers(0, len(HOSTS) - 1)),
    lo=st.integers(0, 8),
    width=st.integers(0, 8),
    desc=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 10)),
    color=st.one_of(st.none(), st.sampled_from(["x", "y"])),
)
def test_queries_agree_with_a_dict_model(
    steps: list, pick: set[int], lo: int, width: int, desc: bool, limit: int | None, color: str | None
) -> None:
    store, model = _apply(steps)
    try:
        h = store.engine("measure")
        start, end = ts_of(lo), ts_of(lo + width)
        # no series picked: query every series (no entity selector)
        sids = {series_id(HOSTS[i]) for i in (pick or range(len(HOSTS)))}
        sel = sorted(
            (ts, s, v)
            for (s, ts), v in model.items()
            if s in sids and start <= ts < end and color in (None, v[2])
        )
        if desc:
            sel.reverse()
        want = sel if limit is None else sel[:limit]
        kw: dict[str, Any] = {"start": start, "end": end}
        if color is not None:
            kw["tags"] = {"color": color}
        if pick:
            kw["entities"] = [{"app": HOSTS[i][0], "shard": HOSTS[i][1]} for i in sorted(pick)]
        r = h.query(dataset="m", order="desc" if desc else "asc", limit=limit, **kw)
        got = list(
            zip(
                r.timestamp.tolist(),
                r.series.tolist(),
                r.version.tolist(),
                r.fields["value"].tolist(),
                strict=True,
            )
        )
        assert got == [(ts, s, v[0], v[1]) for ts, s, v in want]
        assert r.fields["ratio"].tolist() == [v[1] / 4 for _, _, v in want]
        # aggregates over the same selection (no limit, no order)
        vals = [v[1] for _, _, v in sel]
        assert h.query(dataset="m", agg="count", **kw).scalar == len(vals)
        assert h.query(dataset="m", agg="sum", field="value", **kw).scalar == sum(vals)
        mx = h.query(dataset="m", agg="max", field="value", **kw).scalar
        assert mx == (max(vals) if vals else None)
        per = h.query(dataset="m", agg="avg", field="ratio", by_series=True, **kw).by_entity()
        want_per: dict[tuple, list[float]] = {}
        for _ts, s, v in sel:
            want_per.setdefault(next(host for host in HOSTS if series_id(host) == s), []).append(v[1] / 4)
        assert per == {k: pytest.approx(float(np.mean(v))) for k, v in want_per.items()}
    finally:
        store.close()


@settings(max_examples=15, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_a_merge_keeps_exactly_the_winning_points(steps: list) -> None:
    store, model = _apply([*steps, ("flush", None)])
    try:
        h = store.engine("measure")
        h.merge_now()
        parts = [p for t in h.tables() for p in t.live_parts]
        assert all(len(t.live_parts) <= 1 for t in h.tables())  # one part per daily table
        assert sum(p.reader.meta.rows for p in parts) == len(model)
        r = h.query(dataset="m")
        got = {
            (s, ts): (v, x)
            for s, ts, v, x in zip(
                r.series.tolist(),
                r.timestamp.tolist(),
                r.version.tolist(),
                r.fields["value"].tolist(),
                strict=True,
            )
        }
        assert got == {k: (v[0], v[1]) for k, v in model.items()}
    finally:
        store.close()
