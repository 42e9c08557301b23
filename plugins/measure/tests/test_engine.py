"""The measure engine end to end: defining measures, writing points, versioned overwrite across
flushes, merges and reopen, queries by entity and time, projections, order, limit, aggregates,
columnar export, bad input, and the demo workload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lamina
from lamina import InvalidInputError
from lamina.plugins import Registry
from lamina_measure import series_id
from lamina_measure.plugin import ENGINE

API1 = {"service": "api", "instance": "i-1"}


def _one(h: lamina.EngineHandle, **kw: Any) -> list[tuple[int, int, float]]:
    r = h.query(dataset="http", entity=API1, **kw)
    return list(zip(r.timestamp.tolist(), r.version.tolist(), r.fields["latency"].tolist(), strict=True))


def test_points_come_back_with_series_fields_and_tags(
    http: lamina.EngineHandle, points: Callable, t0: int
) -> None:
    http.write(
        points(
            [
                ("api", "i-1", t0 + 2, 0, 1.5, 10, "200"),
                ("api", "i-1", t0 + 1, 0, 2.5, 11, "500"),
                ("db", "i-1", t0, 0, 9.0, 1, "200"),
            ],
            [{"region": "eu"}, {}, {"region": "us"}],
        ),
        dataset="http",
    )
    r = http.query(dataset="http")
    assert r.timestamp.tolist() == [t0, t0 + 1, t0 + 2]
    assert r.series.tolist() == [
        series_id(["db", "i-1"]),
        series_id(["api", "i-1"]),
        series_id(["api", "i-1"]),
    ]
    assert r.fields["latency"].tolist() == [9.0, 2.5, 1.5]
    assert r.fields["requests"].dtype == np.int64
    assert r.fields["code"].tolist() == ["200", "500", "200"]
    assert r.tags["region"].tolist() == ["us", None, "eu"]
    assert r.points()[1].tags == {"service": "api", "instance": "i-1"}
    cols = r.columns()
    assert list(cols) == [
        "series",
        "timestamp",
        "version",
        "latency",
        "requests",
        "code",
        "tags.instance",
        "tags.region",
        "tags.service",
    ]


def test_highest_version_wins_across_flushes_merges_and_reopen(
    open_store: Callable, points: Callable, t0: int, http_options: dict
) -> None:
    from lamina.io.sim import SimFS

    fs = SimFS()
    h = open_store(fs=fs).engine("measure")
    h.define("http", **http_options)
    h.write(
        points([("api", "i-1", t0, 0, 1.0, 1, "a"), ("api", "i-1", t0 + 5, 0, 5.0, 1, "a")]), dataset="http"
    )
    h.flush()
    h.write(points([("api", "i-1", t0, 2, 2.0, 2, "b")]), dataset="http")
    h.flush()
    h.write(points([("api", "i-1", t0, 1, 3.0, 3, "c")]), dataset="http")  # older version, unflushed
    assert _one(h) == [(t0, 2, 2.0), (t0 + 5, 0, 5.0)]
    h.flush()
    assert _one(h) == [(t0, 2, 2.0), (t0 + 5, 0, 5.0)]
    assert h.merge_now() == 1
    (table,) = h.tables()
    (part,) = table.live_parts
    assert part.reader.meta.rows == 2  # the merge dropped the superseded versions
    assert _one(h) == [(t0, 2, 2.0), (t0 + 5, 0, 5.0)]
    # equal version: the later write wins, before and after a merge
    h.write(points([("api", "i-1", t0 + 5, 0, 6.0, 1, "d")]), dataset="http")
    assert _one(h) == [(t0, 2, 2.0), (t0 + 5, 0, 6.0)]
    h.flush()
    h.merge_now()
    assert _one(h) == [(t0, 2, 2.0), (t0 + 5, 0, 6.0)]
    h.store.close()
    h2 = open_store(fs=fs).engine("measure")
    assert _one(h2) == [(t0, 2, 2.0), (t0 + 5, 0, 6.0)]


def test_a_superseded_version_never_matches_a_tag_filter(
    http: lamina.EngineHandle, points: Callable, t0: int
) -> None:
    http.write(points([("api", "i-1", t0, 0, 1.0, 1, "a")], [{"state": "old"}]), dataset="http")
    http.flush()
    http.write(points([("api", "i-1", t0, 1, 2.0, 1, "a")], [{"state": "new"}]), dataset="http")
    assert len(http.query(dataset="http", tags={"state": "old"})) == 0
    assert http.query(dataset="http", tags={"state": "new"}).fields["latency"].tolist() == [2.0]


@pytest.fixture
def filled(http: lamina.EngineHandle, points: Callable, t0: int) -> lamina.EngineHandle:
    rows = []
    extra = []
    for k in range(10):
        for svc, inst in (("api", "i-1"), ("api", "i-2"), ("db", "i-1")):
            rows.append(
                (
                    svc,
                    inst,
                    t0 + k * 1000,
                    0,
                    float(k) + (0.5 if svc == "db" else 0.0),
                    k + 1,
                    "200" if k % 3 else "500",
                )
            )
            extra.append({"region": "eu" if inst == "i-1" else "us"})
    http.write(points(rows[:15], extra[:15]), dataset="http")
    http.flush()
    http.write(points(rows[15:], extra[15:]), dataset="http")
    return http


def test_select_by_entity_series_ids_and_time_range(filled: lamina.EngineHandle, t0: int) -> None:
    r = filled.query(dataset="http", entity=API1, start=t0 + 2000, end=t0 + 5000)
    assert r.timestamp.tolist() == [t0 + 2000, t0 + 3000, t0 + 4000]
    both = filled.query(dataset="http", entities=[API1, {"service": "db", "instance": "i-1"}], end=t0 + 1000)
    assert sorted(both.points()[i].tags["service"] for i in range(2)) == ["api", "db"]
    sid = series_id(["api", "i-2"])
    assert len(filled.query(dataset="http", series_ids=[sid])) == 10
    assert len(filled.query(dataset="http", series_ids=[12345])) == 0
    assert len(filled.query(dataset="http", entity={"service": "web", "instance": "x"})) == 0


def test_tag_filters_projections_order_and_limit(filled: lamina.EngineHandle, t0: int) -> None:
    r = filled.query(dataset="http", tags={"region": "us"}, fields=["requests"], tag_projection=["instance"])
    assert set(r.tags) == {"instance"} and set(r.fields) == {"requests"}
    assert set(r.tags["instance"].tolist()) == {"i-2"}
    assert len(r) == 10
    r = filled.query(dataset="http", entity=API1, order="desc", limit=3)
    assert r.timestamp.tolist() == [t0 + 9000, t0 + 8000, t0 + 7000]
    r = filled.query(dataset="http", tags={"service": ["db"], "region": lambda v: v.startswith("e")})
    assert len(r) == 10
    assert len(filled.query(dataset="http", tags={"region": 1})) == 0  # type-strict equality


def test_aggregates_per_series_and_across_series(filled: lamina.EngineHandle, t0: int) -> None:
    per = filled.query(dataset="http", agg="sum", field="requests", by_series=True)
    assert per.by_entity() == {("api", "i-1"): 55, ("api", "i-2"): 55, ("db", "i-1"): 55}
    assert per.count.tolist() == [10, 10, 10]
    avg = filled.query(dataset="http", agg="avg", field="latency", by_series=True, tags={"service": "db"})
    assert avg.by_entity() == {("db", "i-1"): pytest.approx(5.0)}
    assert filled.query(dataset="http", agg="count").scalar == 30
    assert filled.query(dataset="http", agg="max", field="latency", start=t0, end=t0 + 3000).scalar == 2.5
    assert filled.query(dataset="http", agg="min", field="requests", entity=API1, start=t0 + 4000).scalar == 5
    assert filled.query(dataset="http", agg="avg", field="latency", start=0, end=1).scalar is None
    assert filled.query(dataset="http", agg="sum", field="requests", start=0, end=1).scalar == 0
    assert "value" in per.columns() and "tags.service" in per.columns()


def test_arrow_export(filled: lamina.EngineHandle) -> None:
    pa = pytest.importorskip("pyarrow")
    t = filled.query(dataset="http").to_arrow()
    assert isinstance(t, pa.Table)
    assert t.num_rows == 30
    assert t.column("requests").to_pylist()[:3] == [1, 1, 1]
    assert sorted(t.column("tags.region").to_pylist()[:3]) == ["eu", "eu", "us"]  # t0: 3 series
    agg = filled.query(dataset="http", agg="count", by_series=True).to_arrow()
    assert agg.column("count").to_pylist() == [10, 10, 10]


def test_arrow_export_names_a_column_arrow_cannot_hold(
    http: lamina.EngineHandle, points: Callable, t0: int
) -> None:
    pytest.importorskip("pyarrow")
    http.write(
        points(
            [("a", "1", t0, 0, 1.0, 1, "x"), ("a", "1", t0 + 1, 0, 1.0, 1, "x")], [{"z": 1}, {"z": "one"}]
        ),
        dataset="http",
    )
    with pytest.raises(ValueError, match=r"tags\.z"):
        http.query(dataset="http").to_arrow()


@pytest.mark.parametrize(
    ("batch_change", "field", "row"),
    [
        (lambda b: b["tags"][1].pop("instance"), "tags.instance", 1),
        (lambda b: b["tags"][0].update(service=True), "tags.service", 0),
        (lambda b: b["tags"][1].update(service=1.5), "tags.service", 1),
        (lambda b: b.update(series=[1, 2]), "series", None),
        (lambda b: b.update(requests=[1, 2.5]), "requests", 1),
        (lambda b: b.update(code=["a", b"b"]), "code", 1),
        (lambda b: b.update(version=[0, "1"]), "version", 1),
        (lambda b: b.pop("latency"), "latency", None),
        (lambda b: b.update(extra=[1, 2]), "extra", None),
        (lambda b: b.pop("tags"), "tags", None),
        (lambda b: b.pop("timestamp"), "timestamp", None),
        (lambda b: b.update(timestamp=5), "timestamp", None),
        (lambda b: b.update(timestamp=[1, 2.5]), "timestamp", 1),
        (lambda b: b.update(timestamp=[1]), "tags.service", None),
        (lambda b: b["tags"].append({"service": "a", "instance": "b"}), "tags.service", None),
    ],
)
def test_bad_points_are_refused_naming_the_field_and_lose_nothing(
    http: lamina.EngineHandle, points: Callable, t0: int, batch_change: Callable, field: str, row: int | None
) -> None:
    http.write(points([("api", "i-1", t0, 0, 1.0, 1, "a")]), dataset="http")
    http.flush()
    bad = points([("api", "i-1", t0 + 1, 0, 1.0, 1, "a"), ("api", "i-1", t0 + 2, 0, 1.0, 1, "a")])
    batch_change(bad)
    with pytest.raises(InvalidInputError) as e:
        http.write(bad, dataset="http")
    assert e.value.field == field
    if row is not None:
        assert e.value.row == row
    assert http.query(dataset="http").timestamp.tolist() == [t0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"entity": {"service": "api"}}, "entity.instance"),
        ({"entity": {"service": "api", "instance": "i", "zone": "z"}}, "entity.zone"),
        ({"entity": API1, "series_ids": [1]}, "series_ids"),
        ({"series_ids": [True]}, "series_ids[0]"),
        ({"fields": ["nope"]}, "fields[0]"),
        ({"order": "up"}, "order"),
        ({"limit": -1}, "limit"),
        ({"start": 1.5}, "start"),
        ({"agg": "median", "field": "latency"}, "agg"),
        ({"agg": "sum"}, "field"),
        ({"agg": "sum", "field": "code"}, "field"),
        ({"agg": "count", "limit": 3}, "agg"),
        ({"by_series": True}, "by_series"),
        ({"tags": {"region": [["eu"]]}}, "tags.region"),
        ({"tags": {"region": {"eu": 1}}}, "tags.region"),
        ({"tags": ["region"]}, "tags"),
    ],
)
def test_bad_queries_are_refused_naming_the_parameter(
    http: lamina.EngineHandle, kwargs: dict, field: str
) -> None:
    with pytest.raises(InvalidInputError) as e:
        http.query(dataset="http", **kwargs)
    assert e.value.field == field


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"fields": {"v": "int64"}}, "entity"),
        ({"entity": [], "fields": {"v": "int64"}}, "entity"),
        ({"entity": ["a", "a"], "fields": {"v": "int64"}}, "entity"),
        ({"entity": ["a"]}, "fields"),
        ({"entity": ["a"], "fields": {"version": "int64"}}, "fields.version"),
        ({"entity": ["a"], "fields": {"v": "decimal"}}, "fields.v"),
        ({"entity": ["a"], "fields": {"1v": "int64"}}, "fields[0]"),
        ({"entity": ["a"], "fields": {"v": "int64"}, "unit": "ms"}, "unit"),
    ],
)
def test_bad_definitions_are_refused_and_store_nothing(
    open_store: Callable, options: dict, field: str
) -> None:
    h = open_store().engine("measure")
    with pytest.raises(InvalidInputError) as e:
        h.define("m", **options)
    assert e.value.field == field
    assert h.options("m") is None


def test_definition_is_canonical_and_redefinition_is_refused(open_store: Callable) -> None:
    h = open_store().engine("measure")
    a = h.define("m", entity=("host",), fields={"cpu": "float64", "mem": "int64"})
    assert h.define("m", entity=["host"], fields=[["cpu", "float64"], ["mem", "int64"]]) == a
    with pytest.raises(InvalidInputError) as e:
        h.define("m", entity=["host"], fields={"cpu": "int64", "mem": "int64"})
    assert e.value.field == "options"
    with pytest.raises(InvalidInputError) as e:
        h.write({"timestamp": [1], "tags": [{"host": "a"}], "cpu": [1.0], "mem": [1]}, dataset="undefined")
    assert e.value.field == "dataset"


def test_entry_point_registers_the_engine() -> None:
    r = Registry()
    r.load_entry_points()
    assert r.engine("measure").name == "measure"
    assert r.engine("measure").datasets is not None


def test_demo_checks_its_queries(open_store: Callable) -> None:
    h = open_store().engine("measure")
    moved: list[int] = []
    report = ENGINE.demo(h, rows=3000, seed=7, now_ns=1_700_000_000_000_000_000, advance=moved.append)
    assert report.rows == sum(moved) >= 3000
    assert report.unit == "points" and report.flushes >= 1
    assert len(report.queries) == 4
    assert all(q.ok for q in report.queries), report.queries
    assert all(q.result == q.expected for q in report.queries)
    # the same run again into the same store rewrites the same points: still every answer right
    again = ENGINE.demo(h, rows=3000, seed=7, now_ns=1_700_000_000_000_000_000, advance=moved.append)
    assert all(q.ok for q in again.queries), again.queries


def test_lamina_check_reads_a_measure_with_its_own_schema(filled: lamina.EngineHandle) -> None:
    from lamina.check import check_store

    filled.flush()
    filled.merge_now()
    reg = Registry()
    reg._add_engine(ENGINE, "<test>")
    report = check_store(filled.store.path, fs=filled.store.fs, registry=reg, deep=True)
    assert report.ok, report.problems
    assert [t.dataset for t in report.tables] == ["http"]
    assert report.parts_checked == 1 and report.frames_checked > 0


def test_write_rows_derives_series_and_default_version(http: lamina.EngineHandle, t0: int) -> None:
    http.write_rows(
        [
            {"timestamp": t0, "latency": 1.0, "requests": 1, "code": "200", "tags": API1},
            {"timestamp": t0 + 1, "latency": 2.0, "requests": 2, "code": "200", "tags": API1},
        ],
        dataset="http",
    )
    r = http.query(dataset="http", entity=API1)
    assert r.series.tolist() == [series_id(["api", "i-1"])] * 2
    assert r.version.tolist() == [0, 0]
    with pytest.raises(InvalidInputError) as e:  # a version on some rows only
        http.write_rows(
            [
                {"timestamp": t0, "latency": 1.0, "requests": 1, "code": "x", "tags": API1},
                {"timestamp": t0, "version": 3, "latency": 1.0, "requests": 1, "code": "x", "tags": API1},
            ],
            dataset="http",
        )
    assert (e.value.field, e.value.row) == ("version", 0)
