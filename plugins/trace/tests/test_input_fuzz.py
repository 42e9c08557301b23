"""Whatever the trace engine's `write()` accepts, `flush()` stores and `query()` returns
unchanged; everything else is refused with `InvalidInputError` and changes nothing (SPEC §10, 8
and 11). Hypothesis draws batches with one hostile column at a time (`lamina.testing.input_fuzz`),
all-valid batches that must be accepted, and hostile query arguments."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
from lamina.testing import input_fuzz as fz
from lamina_trace import TagFilter
from lamina_trace.plugin import ENGINE

SETTINGS = settings(max_examples=fz.examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
COLUMNS = ("trace_id", "span_id", "timestamp", "duration", "payload")


def _span(tid: Any, sid: Any, ts: Any, dur: Any, payload: Any, tags: dict[str, Any]) -> tuple[Any, ...]:
    return (tid, sid, int(ts), int(dur), payload, fz.canon_tags(tags))


def _expect(batches: list[Any]) -> list[Any]:
    out = []
    for b in batches:
        cols = [fz.column_values(b, c) for c in COLUMNS]
        trows = fz.tag_rows(b.get("tags"), len(cols[0]))
        out += [_span(*vals, tg) for *vals, tg in zip(*cols, trows, strict=True)]
    return out


SUBJECT = fz.FuzzSubject(
    name="trace",
    engine=ENGINE,
    good={
        "trace_id": [b"good"],
        "span_id": [b"s"],
        "timestamp": [fz.T0],
        "duration": [5],
        "payload": [b"{}"],
        "tags": [{"svc": "web", "status": 200}],
    },
    expect=_expect,
    read=lambda h: [
        _span(s.trace_id, s.span_id, s.timestamp, s.duration, s.payload, s.tags) for s in h.query()
    ],
)


@st.composite
def batches(draw: Any, focus: str | None) -> Any:
    if focus == "batch":
        return draw(st.one_of(fz.hostile_arguments(), st.builds(lambda: {"trace_id": [b"t"]})))
    n = draw(st.integers(0, 5))

    def col(name: str, good: Any, dtypes: tuple[str, ...] = ()) -> Any:
        return draw(fz.column(n, good, hostile=focus == name, dtypes=dtypes))

    hostile_tags = focus == "tags"
    return {
        "trace_id": col("trace_id", st.binary(min_size=1, max_size=64)),
        "span_id": col("span_id", st.binary(min_size=1, max_size=64)),
        "timestamp": col("timestamp", fz.timestamps(), fz.INT_DTYPES),
        "duration": col("duration", st.integers(0, fz.I64_MAX), fz.INT_DTYPES),
        "payload": col("payload", st.one_of(st.binary(max_size=64), st.just(b"p" * 100_000))),
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
    return st.one_of(valid, valid, fz.hostile_arguments())


QUERY_ARGS = st.fixed_dictionaries(
    {},
    optional={
        "dataset": _or_hostile(st.just("default")),
        "start": _or_hostile(fz.timestamps()),
        "end": _or_hostile(fz.timestamps()),
        "limit": _or_hostile(st.integers(0, 5)),
        "tags": _or_hostile(
            st.dictionaries(
                fz.tag_names(hostile=True),
                st.one_of(
                    fz.core_tag_values(hostile=True), st.lists(fz.core_tag_values(hostile=True), max_size=2)
                ),
                max_size=2,
            )
        ),
    },
)


@SETTINGS
@given(
    kwargs=st.one_of(
        QUERY_ARGS,
        st.fixed_dictionaries(
            {"trace_ids": _or_hostile(st.lists(st.binary(max_size=8), max_size=2))},
            optional={"tags": fz.hostile_arguments(), "limit": fz.hostile_arguments()},
        ),
    )
)
def test_hostile_query_arguments_are_answered_or_refused(kwargs: dict[str, Any]) -> None:
    fz.check_query(SUBJECT, kwargs)


# -- regressions --------------------------------------------------------------------------------


@pytest.fixture
def traces(open_store: Any) -> lamina.EngineHandle:
    h = open_store().engine("trace")
    h.write(SUBJECT.good)
    h.flush()
    return h


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({"svc": object()}, "tags.svc"),
        ({"svc": ["web", object()]}, "tags.svc"),
        ({"svc": [["web"]]}, "tags.svc"),
        ({5: "web"}, "tags"),
        ({"svc": "\ud800"}, "tags.svc"),
        ({"\ud800": "web"}, "tags"),
        ({"status": 2**64}, "tags.status"),
        ({"svc": lambda v: True}, "tags.svc"),  # not a TagFilter: would be compared as a value
    ],
)
def test_a_tag_condition_that_can_never_match_is_refused_not_answered_empty(traces, tags, field) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        traces.query(tags=tags)
    assert e.value.field == field


def test_valid_tag_conditions_still_answer(traces) -> None:
    assert len(traces.query(tags={"svc": "web"})) == 1
    assert len(traces.query(tags={"svc": ("db", "web")})) == 1
    assert len(traces.query(tags={"status": TagFilter("status", lambda v: v == 200)})) == 1
    assert traces.query(tags={"svc": None}) == []


@pytest.mark.parametrize("trace_ids", [b"good", "good", 5, {b"good": 1}])
def test_trace_ids_must_be_a_collection_of_bytes(traces, trace_ids) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        traces.query(trace_ids=trace_ids)
    assert e.value.field == "trace_ids"


@pytest.mark.parametrize("dataset", [5, "../../x", "default\n", None])
def test_an_invalid_dataset_is_refused_on_query_and_write(traces, dataset) -> None:
    for call in (lambda: traces.query(dataset=dataset), lambda: traces.write(SUBJECT.good, dataset=dataset)):
        with pytest.raises(lamina.InvalidInputError) as e:
            call()
        assert e.value.field == "dataset"


def test_a_zero_d_timestamp_array_is_refused_by_name(traces) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        traces.write({**SUBJECT.good, "timestamp": np.array(fz.T0)})
    assert e.value.field == "timestamp"
