"""Whatever the measure engine's `write()` accepts, `flush()` stores and `query()` returns
unchanged (after highest-version-wins); everything else is refused with `InvalidInputError` and
changes nothing (SPEC §10, 8 and 11). Hypothesis draws batches with one hostile column at a time
(`lamina.testing.input_fuzz`), all-valid batches that must be accepted, and hostile queries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
from lamina.testing import input_fuzz as fz
from lamina_measure.plugin import ENGINE
from lamina_measure.series import series_id

SETTINGS = settings(max_examples=fz.examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENTITY = ("svc", "inst")
FIELDS = {"i": "int64", "f": "float64", "s": "string", "b": "bytes"}
DATASET = "m"


def _define(h: lamina.EngineHandle) -> None:
    h.define(DATASET, entity=list(ENTITY), fields=FIELDS)


def _point(
    sid: int, ts: Any, ver: Any, i: Any, f: Any, s: Any, b: Any, tags: dict[str, Any]
) -> tuple[Any, ...]:
    return (sid, int(ts), int(ver), int(i), fz.canon_float(f), s, b, fz.canon_tags(tags))


def _expect(batches: list[Any]) -> list[Any]:
    """Highest version wins at each (series, timestamp); equal versions: the later write."""
    won: dict[tuple[int, int], tuple[int, tuple[Any, ...]]] = {}
    for b in batches:
        ts = fz.column_values(b, "timestamp")
        n = len(ts)
        ver = fz.column_values(b, "version") if "version" in b else [0] * n
        fields = [fz.column_values(b, f) for f in FIELDS]
        for k, tags in enumerate(fz.tag_rows(b["tags"], n)):
            sid = series_id([tags[e] for e in ENTITY])
            key = (sid, int(ts[k]))
            if key not in won or int(ver[k]) >= won[key][0]:
                won[key] = (int(ver[k]), _point(sid, ts[k], ver[k], *(c[k] for c in fields), tags))
    return [p for _, p in won.values()]


def _read(h: lamina.EngineHandle) -> list[Any]:
    return [
        _point(p.series, p.timestamp, p.version, *(p.fields[f] for f in FIELDS), p.tags)
        for p in h.query(dataset=DATASET).points()
    ]


SUBJECT = fz.FuzzSubject(
    name="measure",
    engine=ENGINE,
    good={
        "timestamp": [fz.T0],
        "tags": [{"svc": "api", "inst": 1, "zone": "eu"}],
        "i": [1],
        "f": [0.5],
        "s": ["ok"],
        "b": [b"\x00"],
    },
    expect=_expect,
    read=_read,
    setup=_define,
    dataset=DATASET,
)

_ENTITY_VALUES = st.one_of(fz.texts(hostile=False, max_size=20), fz.int64s(), st.binary(max_size=8))
_FLOATS = st.one_of(st.floats(), st.integers(-(2**53), 2**53), st.sampled_from([-0.0, 5e-324]))


@st.composite
def _tags(draw: Any, n: int, focus: str | None) -> Any:
    """Entity tags (hostile under focus "entity") and other tags (hostile under focus "tags"),
    in row or column form."""
    hostile = focus == "tags"
    values = _ENTITY_VALUES if focus != "entity" else st.one_of(_ENTITY_VALUES, fz.hostile_scalars())
    entity = {e: draw(st.lists(values, min_size=n, max_size=n)) for e in ENTITY}
    if focus == "entity" and draw(st.booleans()):
        entity.pop(draw(st.sampled_from(ENTITY)))  # an entity tag missing
    extra = draw(fz.tags(n, fz.core_tag_values(hostile=hostile), hostile=hostile, exclude=ENTITY))
    if isinstance(extra, dict):
        return {**extra, **entity}
    if isinstance(extra, list) and len(extra) == n and all(isinstance(r, dict) for r in extra):
        return [{**r, **{e: c[k] for e, c in entity.items()}} for k, r in enumerate(extra)]
    return extra  # malformed: the engine must refuse it


@st.composite
def batches(draw: Any, focus: str | None) -> Any:
    if focus == "batch":
        return draw(
            st.one_of(
                fz.hostile_arguments(),
                st.builds(lambda: {**SUBJECT.good, "series": [1]}),
                st.builds(lambda: {k: v for k, v in SUBJECT.good.items() if k != "tags"}),
            )
        )
    n = draw(st.integers(0, 5))

    def col(name: str, good: Any, dtypes: tuple[str, ...] = ()) -> Any:
        return draw(fz.column(n, good, hostile=focus == name, dtypes=dtypes))

    out = {
        "timestamp": col("timestamp", fz.timestamps(), fz.INT_DTYPES),
        "tags": draw(_tags(n, focus)),
        "i": col("i", fz.int64s(), fz.INT_DTYPES),
        "f": col("f", _FLOATS, fz.FLOAT_DTYPES),
        "s": col("s", fz.texts(hostile=False, max_size=300)),
        "b": col("b", st.binary(max_size=40)),
    }
    if focus == "version" or draw(st.booleans()):
        out["version"] = col("version", fz.int64s(), fz.INT_DTYPES)
    return out


@pytest.mark.parametrize("focus", ["timestamp", "version", "entity", "tags", "i", "f", "s", "b", "batch"])
@SETTINGS
@given(data=st.data())
def test_a_hostile_column_is_refused_or_stored_unchanged(focus: str, data: st.DataObject) -> None:
    fz.check_write(SUBJECT, data.draw(batches(focus)))


@SETTINGS
@given(batch=batches(None))
def test_valid_batches_are_all_accepted_and_read_back_unchanged(batch: Any) -> None:
    assert fz.check_write(SUBJECT, batch) == "stored"


def _or_hostile(valid: Any) -> Any:
    return st.one_of(valid, valid, valid, fz.hostile_arguments())


_ENTITY = st.fixed_dictionaries({e: st.one_of(_ENTITY_VALUES, fz.hostile_scalars()) for e in ENTITY})
QUERY_ARGS = st.fixed_dictionaries(
    {},
    optional={
        "dataset": _or_hostile(st.just(DATASET)),
        "entity": _or_hostile(_ENTITY),
        "start": _or_hostile(fz.timestamps()),
        "end": _or_hostile(fz.timestamps()),
        "limit": _or_hostile(st.integers(0, 5)),
        "order": _or_hostile(st.sampled_from(["asc", "desc"])),
        "fields": _or_hostile(st.lists(st.sampled_from(list(FIELDS)), max_size=2)),
        "tag_projection": _or_hostile(st.lists(fz.tag_names(hostile=True), max_size=2)),
        "tags": _or_hostile(
            st.dictionaries(fz.tag_names(hostile=True), fz.core_tag_values(hostile=True), max_size=2)
        ),
        "entities": _or_hostile(st.lists(_ENTITY, max_size=2)),
        "series_ids": _or_hostile(st.lists(st.one_of(fz.int64s(), st.integers()), max_size=2)),
        "agg": _or_hostile(st.sampled_from(["count", "sum", "min", "max", "avg", "median"])),
        "field": _or_hostile(st.sampled_from([*FIELDS, "nope"])),
        "by_series": _or_hostile(st.booleans()),
    },
)


@SETTINGS
@given(kwargs=QUERY_ARGS)
def test_hostile_query_arguments_are_answered_or_refused(kwargs: dict[str, Any]) -> None:
    fz.check_query(SUBJECT, kwargs)


# -- regressions --------------------------------------------------------------------------------


@pytest.fixture
def m(open_store: Any) -> lamina.EngineHandle:
    h = open_store().engine("measure")
    _define(h)
    h.write(SUBJECT.good, dataset=DATASET)
    return h


def _bad(**edit: Any) -> dict[str, Any]:
    return {**SUBJECT.good, **edit}


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        (_bad(tags=[{"svc": "\ud800", "inst": 1}]), "tags.svc"),
        (_bad(tags={"svc": ["a\udcff"], "inst": [1]}), "tags.svc"),
        (_bad(s=["\ud800"]), "s"),
        (_bad(tags=[{"svc": "api", "inst": 1, "note": "\ud800"}]), "tags.note"),
        (_bad(f=[2**53 + 1]), "f"),
    ],
    ids=["entity", "entity-column-form", "string-field", "tag", "inexact-float"],
)
def test_what_the_encoders_cannot_store_is_refused_and_the_buffer_still_flushes(m, batch, field) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        m.write(batch, dataset=DATASET)
    assert e.value.field == field
    m.flush()
    assert len(m.query(dataset=DATASET)) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"entity": {"svc": "\ud800", "inst": 1}}, "entity.svc"),
        ({"entities": [{"svc": "api", "inst": "\udc00"}]}, "entities[0].inst"),
        ({"tags": {"zone": object()}}, "tags.zone"),
        ({"tags": {5: "eu"}}, "tags"),
        ({"tags": {"zone": "\ud800"}}, "tags.zone"),
        ({"tag_projection": ["\ud800"]}, "tag_projection[0]"),
        ({"dataset": "../../x"}, "dataset"),
        ({"dataset": 5}, "dataset"),
    ],
)
def test_malformed_query_arguments_are_refused_never_answered_empty(m, kwargs, field) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        m.query(**{"dataset": DATASET, **kwargs})
    assert e.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agg": np.array(["sum", "avg"]), "field": "f"}, "agg"),
        ({"agg": "sum", "field": np.array(["f", "i"])}, "field"),
    ],
)
def test_array_arguments_are_refused_not_compared_elementwise(m, kwargs, field) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        m.query(dataset=DATASET, **kwargs)
    assert e.value.field == field


def test_valid_tag_conditions_still_answer(m) -> None:
    assert len(m.query(dataset=DATASET, tags={"zone": "eu"})) == 1
    assert len(m.query(dataset=DATASET, tags={"zone": ["eu", "us"]})) == 1
    assert len(m.query(dataset=DATASET, tags={"inst": lambda v: v == 1})) == 1
    assert len(m.query(dataset=DATASET, tags={"zone": None})) == 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"entity": ["\ud800"], "fields": {"v": "float64"}}, "entity[0]"),
        ({"entity": ["svc"], "fields": {"v\n": "float64"}}, "fields[0]"),
    ],
)
def test_a_definition_that_could_never_be_written_is_refused(open_store, options, field) -> None:
    h = open_store().engine("measure")
    with pytest.raises(lamina.InvalidInputError) as e:
        h.define("d", **options)
    assert e.value.field == field
    with pytest.raises(lamina.InvalidInputError) as e:
        h.define(5, **options)
    assert e.value.field == "dataset"
