"""Whatever `write()` accepts, `flush()` stores and `query()` returns unchanged (SPEC §10, 11):
hypothesis-drawn hostile batches against the core's reference engine (kv) and an engine with one
column of every kind, one test per column (the others drawn valid), plus all-valid batches that
must be accepted. The machinery is `lamina.testing.input_fuzz`; the figures (cases, wedged
tables, raw exceptions) are printed in the reliability summary."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.testing import input_fuzz as fz
from lamina.testing.kv import KV

SETTINGS = settings(max_examples=fz.examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- kv: key (bytes), ts, value (bytes), tags -----------------------------------------------------


def _kv_expect(batches: list[Any]) -> list[Any]:
    out = []
    for b in batches:
        ts = fz.column_values(b, "ts")
        keys, values = fz.column_values(b, "key"), fz.column_values(b, "value")
        trows = fz.tag_rows(b.get("tags"), len(ts))
        for k, t, v, tg in zip(keys, ts, values, trows, strict=True):
            out.append((k, int(t), v, fz.canon_tags(tg)))
    return out


KV_SUBJECT = fz.FuzzSubject(
    name="kv",
    engine=KV,
    good={"key": [b"good"], "ts": [fz.T0], "value": [b"g"], "tags": [{"svc": "web", "n": 1}]},
    expect=_kv_expect,
    read=lambda h: [(k, t, v, fz.canon_tags(tg)) for k, t, v, tg in h.query()],
)


@st.composite
def kv_batches(draw: Any, focus: str | None) -> Any:
    if focus == "batch":
        return draw(st.one_of(fz.hostile_arguments(), st.builds(lambda: {"key": [b"k"]})))
    n = draw(st.integers(0, 5))

    def col(name: str, good: Any, dtypes: tuple[str, ...] = ()) -> Any:
        return draw(fz.column(n, good, hostile=focus == name, dtypes=dtypes))

    return {
        "key": col("key", st.binary(max_size=24)),
        "ts": col("ts", fz.timestamps(), fz.INT_DTYPES),
        "value": col("value", st.one_of(st.binary(max_size=40), st.just(b"v" * 70_000))),
        "tags": draw(fz.tags(n, fz.core_tag_values(hostile=focus == "tags"), hostile=focus == "tags")),
    }


@pytest.mark.parametrize("focus", ["key", "ts", "value", "tags", "batch"])
@SETTINGS
@given(data=st.data())
def test_kv_hostile_column_is_refused_or_stored_unchanged(focus: str, data: st.DataObject) -> None:
    fz.check_write(KV_SUBJECT, data.draw(kv_batches(focus)))


@SETTINGS
@given(batch=kv_batches(None))
def test_kv_valid_batches_are_all_accepted_and_read_back_unchanged(batch: Any) -> None:
    assert fz.check_write(KV_SUBJECT, batch) == "stored"


@SETTINGS
@given(
    kwargs=st.fixed_dictionaries(
        {},
        optional={
            "dataset": st.one_of(fz.texts(), fz.hostile_scalars()),
            "start": st.one_of(fz.timestamps(), fz.hostile_scalars()),
            "end": st.one_of(fz.timestamps(), fz.hostile_scalars()),
        },
    )
)
def test_kv_hostile_query_arguments_are_answered_or_refused(kwargs: dict[str, Any]) -> None:
    fz.check_query(KV_SUBJECT, kwargs)


# -- every kind: key, ts, n (int64), f (float64), s (string), b (bytes), tags -----------------------

_KIND_COLUMNS = ("key", "ts", "n", "f", "s", "b")


def _kinds_row(key: Any, ts: Any, n: Any, f: Any, s: Any, b: Any, tags: dict[str, Any]) -> tuple[Any, ...]:
    return (key, int(ts), int(n), fz.canon_float(f), s, b, fz.canon_tags(tags))


def _kinds_expect(batches: list[Any]) -> list[Any]:
    out = []
    for batch in batches:
        cols = [fz.column_values(batch, c) for c in _KIND_COLUMNS]
        trows = fz.tag_rows(batch.get("tags"), len(cols[0]))
        out += [_kinds_row(*vals, tg) for *vals, tg in zip(*cols, trows, strict=True)]
    return out


KINDS_SUBJECT = fz.FuzzSubject(
    name="kinds",
    engine=fz.EVERY_KIND,
    good={
        "key": [b"good"],
        "ts": [fz.T0],
        "n": [1],
        "f": [0.5],
        "s": ["é"],
        "b": [b"\x00"],
        "tags": [{"svc": "web", "arr": ("a", "b"), "on": True}],
    },
    expect=_kinds_expect,
    read=lambda h: [_kinds_row(*(r[c] for c in _KIND_COLUMNS), r["tags"]) for r in h.query()],
)

_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**53), 2**53),
    st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308]),
)


@st.composite
def kinds_batches(draw: Any, focus: str | None) -> Any:
    if focus == "batch":
        return draw(st.one_of(fz.hostile_arguments(), st.builds(lambda: {"key": [b"k"], "zzz": [1]})))
    n = draw(st.integers(0, 5))

    def col(name: str, good: Any, dtypes: tuple[str, ...] = ()) -> Any:
        return draw(fz.column(n, good, hostile=focus == name, dtypes=dtypes))

    return {
        "key": col("key", st.binary(max_size=24)),
        "ts": col("ts", fz.timestamps(), fz.INT_DTYPES),
        "n": col("n", fz.int64s(), fz.INT_DTYPES),
        "f": col("f", _FLOATS, fz.FLOAT_DTYPES),
        "s": col("s", fz.texts(hostile=False, max_size=300)),
        "b": col("b", st.binary(max_size=40)),
        "tags": draw(fz.tags(n, fz.core_tag_values(hostile=focus == "tags"), hostile=focus == "tags")),
    }


@pytest.mark.parametrize("focus", [*_KIND_COLUMNS, "tags", "batch"])
@SETTINGS
@given(data=st.data())
def test_every_column_kind_hostile_values_are_refused_or_stored_unchanged(
    focus: str, data: st.DataObject
) -> None:
    fz.check_write(KINDS_SUBJECT, data.draw(kinds_batches(focus)))


@SETTINGS
@given(batch=kinds_batches(None))
def test_every_column_kind_valid_batches_are_all_accepted_and_read_back_unchanged(batch: Any) -> None:
    assert fz.check_write(KINDS_SUBJECT, batch) == "stored"
