"""Whatever the stream engine's `write()` accepts, `flush()` stores and `query()` returns
unchanged; everything else is refused with `InvalidInputError` and changes nothing (SPEC §10, 8
and 11). Hypothesis draws batches with one hostile column at a time (`lamina.testing.input_fuzz`),
all-valid batches that must be accepted, and hostile query arguments."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
from lamina.testing import input_fuzz as fz
from lamina_stream import Eq, Has, In, Range, series_id
from lamina_stream.plugin import ENGINE

SETTINGS = settings(max_examples=fz.examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _canon(v: Any) -> Any:
    return fz.canon_tag(tuple(v) if type(v) is list else v)  # string arrays read back as tuples


def _element(sid: int, ts: Any, eid: str, tags: dict[str, Any]) -> tuple[Any, ...]:
    return (sid, int(ts), eid, tuple(sorted((t, _canon(v)) for t, v in tags.items())))


def _expect(batches: list[Any]) -> list[Any]:
    """Each element with its series ID (from its entity tags) and its tags, entity tags among
    them (an entity tag wins over an absent tag of the same name)."""
    out = []
    for b in batches:
        ts = fz.column_values(b, "timestamp")
        eids = fz.column_values(b, "element_id")
        entity = fz.tag_rows(b["series"], len(ts))
        tags = fz.tag_rows(b.get("tags"), len(ts))
        for t, e, ent, tg in zip(ts, eids, entity, tags, strict=True):
            out.append(_element(series_id(ent), t, e, {**tg, **ent}))
    return out


SUBJECT = fz.FuzzSubject(
    name="stream",
    engine=ENGINE,
    good={
        "series": [{"svc": "api"}],
        "timestamp": [fz.T0],
        "element_id": ["good"],
        "tags": [{"level": "INFO", "labels": ["a", "b"]}],
    },
    expect=_expect,
    read=lambda h: [_element(e.series_id, e.timestamp, e.element_id, e.tags) for e in h.query()],
)

_VALUES = st.one_of(
    fz.texts(hostile=False, max_size=60),
    fz.int64s(),
    st.binary(max_size=16),
    st.lists(fz.texts(hostile=False, max_size=6), max_size=3),
    st.lists(fz.texts(hostile=False, max_size=6), max_size=3).map(tuple),
)
_ENTITY_VALUES = st.one_of(fz.texts(hostile=False, max_size=30), fz.int64s(), st.binary(max_size=8))


@st.composite
def _series(draw: Any, n: int, hostile: bool) -> Any:
    names = draw(st.lists(fz.tag_names(hostile=hostile), min_size=1, max_size=2, unique_by=repr))
    values = st.one_of(_ENTITY_VALUES, fz.hostile_scalars()) if hostile else _ENTITY_VALUES
    rows = [{t: draw(values) for t in names} for _ in range(n)]
    if draw(st.booleans()):
        return rows
    cols = {t: [r[t] for r in rows] for t in names}
    return cols if not hostile else draw(st.sampled_from([cols, rows, {"svc": "api"}, None, [{}] * n, 5]))


@st.composite
def batches(draw: Any, focus: str | None) -> Any:
    if focus == "batch":
        return draw(st.one_of(fz.hostile_arguments(), st.builds(lambda: {**SUBJECT.good, "extra": [1]})))
    n = draw(st.integers(0, 5))
    series = draw(_series(n, focus == "series"))
    first = series[0] if isinstance(series, list) and series else {}
    entity_names = (
        list(series) if isinstance(series, dict) else list(first) if isinstance(first, dict) else []
    )
    hostile_tags = focus == "tags"
    values = st.one_of(_VALUES, fz.hostile_scalars()) if hostile_tags else _VALUES
    return {
        "series": series,
        "timestamp": draw(fz.column(n, fz.timestamps(), hostile=focus == "timestamp", dtypes=fz.INT_DTYPES)),
        "element_id": draw(
            fz.column(n, fz.texts(hostile=False, min_size=1, max_size=256), hostile=focus == "element_id")
        ),
        "tags": draw(
            st.one_of(
                fz.tags(
                    n, values, hostile=hostile_tags, exclude=[t for t in entity_names if isinstance(t, str)]
                ),
                st.none(),
            )
        ),
    }


@pytest.mark.parametrize("focus", ["series", "timestamp", "element_id", "tags", "batch"])
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


_FILTER_VALUES = st.one_of(_VALUES.map(lambda v: tuple(v) if type(v) is list else v), fz.hostile_scalars())
QUERY_ARGS = st.fixed_dictionaries(
    {},
    optional={
        "dataset": _or_hostile(st.just("default")),
        "start": _or_hostile(fz.timestamps()),
        "end": _or_hostile(fz.timestamps()),
        "order": _or_hostile(st.sampled_from(["asc", "desc"])),
        "limit": _or_hostile(st.integers(0, 5)),
        "series": _or_hostile(
            st.dictionaries(
                fz.tag_names(hostile=True), st.one_of(_ENTITY_VALUES, fz.hostile_scalars()), max_size=2
            )
        ),
        "where": _or_hostile(st.dictionaries(fz.tag_names(hostile=True), _FILTER_VALUES, max_size=2)),
        "element_ids": _or_hostile(st.lists(fz.texts(), max_size=2)),
        "projection": _or_hostile(st.lists(fz.tag_names(hostile=True), max_size=2)),
    },
)


@SETTINGS
@given(kwargs=QUERY_ARGS)
def test_hostile_query_arguments_are_answered_or_refused(kwargs: dict[str, Any]) -> None:
    fz.check_query(SUBJECT, kwargs)


# -- regressions --------------------------------------------------------------------------------


@pytest.fixture
def streams(open_store: Any) -> lamina.EngineHandle:
    h = open_store().engine("stream")
    h.write(SUBJECT.good)
    return h


def _bad(**edit: Any) -> dict[str, Any]:
    return {**SUBJECT.good, **edit}


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        (_bad(series=[{"svc": "\ud800"}]), "series.svc"),
        (_bad(series=[{"\udcff": "api"}]), "series"),
        (_bad(element_id=["\ud800"]), "element_id"),
        (_bad(tags=[{"level": "x\udc80"}]), "tags.level"),
        (_bad(tags=[{"labels": ["ok", "\ud800"]}]), "tags.labels"),
        (_bad(tags=[{"\ud800": "x"}]), "tags"),
        (_bad(tags={5: ["x"]}), "tags"),
    ],
    ids=[
        "entity-value",
        "entity-name",
        "element-id",
        "tag-value",
        "string-array-item",
        "tag-name",
        "int-name",
    ],
)
def test_what_the_encoders_cannot_store_is_refused_and_the_buffer_still_flushes(
    streams, batch, field
) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        streams.write(batch)
    assert e.value.field == field
    streams.flush()
    assert [x.element_id for x in streams.query()] == ["good"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (lambda: {"series": {"svc": "\ud800"}}, "series.svc"),
        (lambda: {"series": {"svc": 2**64}}, "series.svc"),
        (lambda: {"where": {"level": "\ud800"}}, "where.level"),
        (lambda: {"where": Eq("level", ("a", "\udc00"))}, "where.level"),
        (lambda: {"where": In("level", ["INFO", "\ud800"])}, "where.level"),
        (lambda: {"where": Has("labels", "\ud800")}, "where.labels"),
        (lambda: {"where": {"\ud800": "x"}}, "where"),
        (lambda: {"element_ids": ["\ud800"]}, "element_ids"),
        (lambda: {"element_ids": 5}, "element_ids"),
        (lambda: {"projection": ["\ud800"]}, "projection"),
        (lambda: {"dataset": "../../x"}, "dataset"),
    ],
)
def test_malformed_query_arguments_are_refused_never_answered_empty(streams, kwargs, field) -> None:
    """`kwargs` is built inside the check: a filter refuses a bad value when it is made."""
    streams.flush()
    with pytest.raises(lamina.InvalidInputError) as e:
        streams.query(**kwargs())
    assert e.value.field == field


def test_element_ids_may_be_any_collection_of_str(streams) -> None:
    assert [x.element_id for x in streams.query(element_ids={"good"})] == ["good"]
    assert [x.element_id for x in streams.query(where=Range("level", ge=0))] == []
