"""Whatever the sidx engine's `write()` accepts, `flush()` stores and `query()` returns unchanged;
everything else is refused with `InvalidInputError` and changes nothing (SPEC §10, 8 and 11).
Hypothesis draws batches with one hostile column at a time (`lamina.testing.input_fuzz`),
all-valid batches that must be accepted, and hostile query arguments."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
from lamina.testing import input_fuzz as fz
from lamina_sidx.plugin import ENGINE

SETTINGS = settings(max_examples=fz.examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
COLUMNS = ("series", "key", "timestamp", "data")


def _entry(series: Any, key: Any, ts: Any, data: Any, tags: dict[str, Any]) -> tuple[Any, ...]:
    return (int(series), int(key), int(ts), data, fz.canon_tags(tags))


def _expect(batches: list[Any]) -> list[Any]:
    out = []
    for b in batches:
        cols = [fz.column_values(b, c) for c in COLUMNS]
        trows = fz.tag_rows(b.get("tags"), len(cols[0]))
        out += [_entry(*vals, tg) for *vals, tg in zip(*cols, trows, strict=True)]
    return out


SUBJECT = fz.FuzzSubject(
    name="sidx",
    engine=ENGINE,
    good={"series": [1], "key": [10], "timestamp": [fz.T0], "data": [b"trace-1"], "tags": [{"svc": "pay"}]},
    expect=_expect,
    read=lambda h: [_entry(e.series, e.key, e.timestamp, e.data, e.tags) for e in h.query()],
)


@st.composite
def batches(draw: Any, focus: str | None) -> Any:
    if focus == "batch":
        return draw(
            st.one_of(
                fz.hostile_arguments(),
                st.builds(lambda: {k: v for k, v in SUBJECT.good.items() if k != "key"}),
            )
        )
    n = draw(st.integers(0, 5))

    def col(name: str, good: Any, dtypes: tuple[str, ...] = ()) -> Any:
        return draw(fz.column(n, good, hostile=focus == name, dtypes=dtypes))

    hostile_tags = focus == "tags"
    return {
        "series": col("series", fz.int64s(), fz.INT_DTYPES),
        "key": col("key", fz.int64s(), fz.INT_DTYPES),
        "timestamp": col("timestamp", fz.timestamps(), fz.INT_DTYPES),
        "data": col("data", st.binary(max_size=40)),
        "tags": draw(fz.tags(n, fz.core_tag_values(hostile=hostile_tags), hostile=hostile_tags)),
    }


@pytest.mark.parametrize("focus", [*COLUMNS, "tags", "batch"])
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


QUERY_ARGS = st.fixed_dictionaries(
    {},
    optional={
        "dataset": _or_hostile(st.just("default")),
        "series": _or_hostile(st.one_of(fz.int64s(), st.lists(fz.int64s(), max_size=2))),
        "key_min": _or_hostile(fz.int64s()),
        "key_max": _or_hostile(fz.int64s()),
        "start": _or_hostile(fz.timestamps()),
        "end": _or_hostile(fz.timestamps()),
        "order": _or_hostile(st.sampled_from(["asc", "desc"])),
        "limit": _or_hostile(st.integers(0, 5)),
        "after": _or_hostile(st.tuples(st.one_of(fz.int64s(), st.integers()), st.integers(-3, 3))),
        "tags": _or_hostile(
            st.dictionaries(fz.tag_names(hostile=True), fz.core_tag_values(hostile=True), max_size=2)
        ),
    },
)


@SETTINGS
@given(kwargs=QUERY_ARGS)
def test_hostile_query_arguments_are_answered_or_refused(kwargs: dict[str, Any]) -> None:
    fz.check_query(SUBJECT, kwargs)


# -- regressions --------------------------------------------------------------------------------


@pytest.fixture
def sidx_loaded(sidx: lamina.EngineHandle) -> lamina.EngineHandle:
    sidx.write(SUBJECT.good)
    sidx.flush()
    return sidx


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({"svc": object()}, "tags.svc"),
        ({5: "pay"}, "tags"),
        ({"svc": "\ud800"}, "tags.svc"),
        ({"svc": ["pay", {}]}, "tags.svc"),
    ],
)
def test_a_tag_condition_that_can_never_match_is_refused_not_answered_empty(sidx_loaded, tags, field) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        sidx_loaded.query(tags=tags)
    assert e.value.field == field


def test_valid_tag_conditions_still_answer(sidx_loaded) -> None:
    assert len(sidx_loaded.query(tags={"svc": "pay"})) == 1
    assert len(sidx_loaded.query(tags={"svc": ["pay", "web"]})) == 1
    assert len(sidx_loaded.query(tags={"svc": lambda v: v.startswith("p")})) == 1


@pytest.mark.parametrize("after", [(10, -1), (2**63, 0), (10, True), [10, 0], (10,)])
def test_after_must_be_an_int64_key_and_a_non_negative_skip(sidx_loaded, after) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        sidx_loaded.query(after=after, limit=1)
    assert e.value.field == "after"


@pytest.mark.parametrize("dataset", [5, "../../x", "default\n"])
def test_an_invalid_dataset_is_refused(sidx_loaded, dataset) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        sidx_loaded.query(dataset=dataset)
    assert e.value.field == "dataset"
