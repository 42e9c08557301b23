"""Bad input raises `InvalidInputError` naming the field, and leaves stored and buffered data alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lamina

Batch = dict[str, Any]


def _good(t0: int) -> Batch:
    return {
        "trace_id": [b"t1", b"t1"],
        "span_id": [b"s1", b"s2"],
        "timestamp": [t0 + 1, t0 + 2],
        "duration": [10, 20],
        "payload": [b"a", b""],
        "tags": [{"svc": "web"}, {"svc": "db", "status": 200}],
    }


def _with(**cols: Any) -> Callable[[Batch], Batch]:
    def edit(b: Batch) -> Batch:
        return {**b, **cols}

    return edit


def _without(col: str) -> Callable[[Batch], Batch]:
    return lambda b: {k: v for k, v in b.items() if k != col}


# (edit of a good batch, field the error must name)
BAD_BATCHES = {
    "str-trace-id": (_with(trace_id=["t1", "t1"]), "trace_id"),
    "bytearray-trace-id": (_with(trace_id=[b"t1", bytearray(b"t1")]), "trace_id"),
    "float-timestamp": (
        lambda b: {**b, "timestamp": [float(b["timestamp"][0]), b["timestamp"][1]]},
        "timestamp",
    ),
    "float-timestamp-array": (
        lambda b: {**b, "timestamp": np.array(b["timestamp"], dtype=float)},
        "timestamp",
    ),
    "bool-timestamp": (lambda b: {**b, "timestamp": [True, b["timestamp"][1]]}, "timestamp"),
    "int-payload": (_with(payload=[b"a", 7]), "payload"),
    "str-payload": (_with(payload=["a", b""]), "payload"),
    "float-duration": (_with(duration=[1.5, 2]), "duration"),
    "unknown-column": (_with(service=["web", "db"]), "service"),
    "missing-column": (_without("duration"), "duration"),
    "missing-trace-id": (_without("trace_id"), "trace_id"),
    "short-column": (_with(span_id=[b"s1"]), "span_id"),
    "long-column": (_with(payload=[b"a", b"b", b"c"]), "payload"),
    "tags-length": (_with(tags=[{}]), "tags"),
    "negative-timestamp": (lambda b: {**b, "timestamp": [b["timestamp"][0], -1]}, "timestamp"),
    "timestamp-beyond-int64": (_with(timestamp=[2**63, 1]), "timestamp"),
    "negative-duration": (_with(duration=[10, -1]), "duration"),
    "empty-trace-id": (_with(trace_id=[b"t1", b""]), "trace_id"),
    "65-byte-trace-id": (_with(trace_id=[b"t1", b"x" * 65]), "trace_id"),
    "empty-span-id": (_with(span_id=[b"", b"s2"]), "span_id"),
    "65-byte-span-id": (_with(span_id=[b"s1", b"y" * 65]), "span_id"),
    "list-tag-value": (_with(tags=[{"svc": ["web"]}, {}]), "tags.svc"),
    "dict-tag-value": (_with(tags=[{}, {"svc": {"a": 1}}]), "tags.svc"),
    "tag-int-beyond-int64": (_with(tags=[{}, {"big": 2**64}]), "tags.big"),
    "empty-tag-name": (_with(tags=[{"": 1}, {}]), "tags"),
    "tags-not-mappings": (_with(tags=["svc=web", {}]), "tags"),
    "column-is-a-scalar-bytes": (_with(payload=b"ab"), "payload"),
}


@pytest.fixture
def loaded(traces, batch, t0):
    """A store with one flushed part and two buffered spans; returns a snapshot function."""
    traces.write(batch([(b"old", b"o1", t0, 1, b"stored", {"svc": "web"})]))
    traces.flush()
    traces.write(
        batch([(b"old", b"o2", t0 + 5, 2, b"buffered", {"svc": "db"}), (b"new", b"n", t0 + 6, 3, b"", {})])
    )

    def state() -> tuple[Any, ...]:
        table = traces.tables()[0]
        return (
            len(traces.tables()),
            table.pending_rows,
            [h.part_id for h in table.live_parts],
            [repr(s) for s in traces.query()],
            [repr(s) for s in traces.query(trace_ids=[b"old", b"new", b"t1"])],
        )

    before = state()
    assert before[1] == 2 and len(before[3]) == 3
    return state, before


@pytest.mark.parametrize(("edit", "field"), list(BAD_BATCHES.values()), ids=list(BAD_BATCHES))
def test_a_bad_batch_raises_naming_the_field_and_changes_nothing(traces, loaded, t0, edit, field):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write(edit(_good(t0)))
    assert ei.value.field == field
    assert field in str(ei.value)
    assert ei.value.engine == "trace"
    assert state() == before


def test_the_unedited_batch_is_accepted(traces, loaded, t0):
    state, before = loaded
    assert traces.write(_good(t0)) == 2
    assert state()[1] == before[1] + 2


def test_ids_of_exactly_64_bytes_are_accepted(traces, batch, t0):
    tid, sid = b"T" * 64, b"S" * 64
    traces.write(batch([(tid, sid, t0, 0, b"", {})]))
    traces.flush()
    assert [(s.trace_id, s.span_id) for s in traces.query(trace_ids=[tid])] == [(tid, sid)]


@pytest.mark.parametrize("dataset", ["", "bad/name", "../escape", ".hidden", "x" * 101, "spaces here"])
def test_an_invalid_dataset_name_raises_and_creates_nothing(traces, loaded, t0, dataset):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write(_good(t0), dataset=dataset)
    assert ei.value.field == "dataset" and "dataset" in str(ei.value)
    assert state() == before


def test_a_valid_dataset_is_kept_apart_from_the_default_one(traces, t0):
    traces.write(_good(t0), dataset="payments-v2")
    assert [s.span_id for s in traces.query(dataset="payments-v2")] == [b"s1", b"s2"]
    assert traces.query() == []


def test_a_batch_that_is_not_a_mapping_raises_naming_batch(traces, loaded):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write([(b"t", b"s", 1, 1, b"", {})])  # type: ignore[arg-type]
    assert ei.value.field == "batch" and "batch" in str(ei.value)
    assert state() == before


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (
            {"trace_id": b"t", "span_id": b"s", "timestamp": 1, "duration": 1, "payload": b"", "color": 1},
            "color",
        ),
        ({"trace_id": b"t", "span_id": b"s", "timestamp": 1, "payload": b""}, "duration"),
        ({"trace_id": b"t", "span_id": b"s", "timestamp": 1, "duration": -4, "payload": b""}, "duration"),
    ],
    ids=["unknown-column", "missing-column", "negative-duration"],
)
def test_bad_rows_in_write_rows_raise_naming_the_field(traces, loaded, row, field):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write_rows([row])
    assert ei.value.field == field and field in str(ei.value)
    assert state() == before


def test_write_rows_accepts_rows_without_tags(traces, t0):
    traces.write_rows([{"trace_id": b"t", "span_id": b"s", "timestamp": t0, "duration": 0, "payload": b"p"}])
    assert [(s.span_id, s.tags) for s in traces.query(trace_ids=[b"t"])] == [(b"s", {})]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"trace_ids": ["t1"]}, "trace_ids"),
        ({"trace_ids": [b"t1"], "limit": 3}, "trace_ids"),
        ({"trace_ids": [b"t1"], "start": 0}, "trace_ids"),
        ({"limit": -1}, "limit"),
        ({"limit": 1.5}, "limit"),
    ],
)
def test_bad_query_arguments_raise_naming_the_field(traces, loaded, kwargs, field):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.query(**kwargs)
    assert ei.value.field == field and field in str(ei.value)
    assert state() == before


@pytest.mark.parametrize(
    "duration", [np.array([10, -1], dtype=np.int64), [10, np.int64(-1)]], ids=["array", "list"]
)
def test_negative_numpy_durations_are_refused(traces, loaded, t0, duration):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write({**_good(t0), "duration": duration})
    assert ei.value.field == "duration"
    assert state() == before


@pytest.mark.parametrize("col", ["trace_id", "span_id", "duration"])
def test_a_scalar_id_or_duration_column_raises_invalid_input(traces, loaded, t0, col):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write({**_good(t0), col: 5})
    assert ei.value.field == col
    assert state() == before


def test_a_scalar_timestamp_column_raises_invalid_input(traces, loaded, t0):
    state, before = loaded
    with pytest.raises(lamina.InvalidInputError) as ei:
        traces.write({**_good(t0), "timestamp": 5})
    assert ei.value.field == "timestamp"
    assert state() == before


def test_writing_after_close_raises_and_the_data_stays(open_store, tmp_path, t0):
    s = open_store(path=tmp_path / "c")
    tr = s.engine("trace")
    tr.write(_good(t0))
    s.close()
    with pytest.raises(lamina.LaminaError):
        tr.write(_good(t0))
    assert [s.span_id for s in open_store(path=tmp_path / "c").engine("trace").query()] == [b"s1", b"s2"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"start": "5"}, "start"), ({"end": b"9"}, "end"), ({"tags": ["svc"]}, "tags")],
    ids=["str-start", "bytes-end", "list-tags"],
)
def test_query_bounds_and_tags_of_the_wrong_type_raise_naming_the_argument(traces, loaded, kwargs, field):
    state, before = loaded
    try:
        traces.query(**kwargs)
    except lamina.InvalidInputError as e:
        assert e.field == field and field in str(e)
    else:
        pytest.fail("no error")
    assert state() == before
