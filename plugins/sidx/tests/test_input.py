"""Bad input raises InvalidInputError naming the field (and row), and loses nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina_sidx import Entry, iter_batches

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def stored(sidx: lamina.EngineHandle, batch: Callable[..., Any]) -> lamina.EngineHandle:
    sidx.write(batch([Entry(1, 10, T0, b"a", {"svc": "x"}), Entry(2, 20, T0 + 1, b"b")]))
    sidx.flush()
    return sidx


GOOD = {"series": [1], "key": [5], "timestamp": [T0], "data": [b"z"]}


@pytest.mark.parametrize(
    ("change", "field", "row"),
    [
        ({"key": ["5"]}, "key", 0),
        ({"key": [2**63]}, "key", 0),
        ({"series": [1.5]}, "series", 0),
        ({"timestamp": [-1]}, "timestamp", 0),
        ({"data": ["text"]}, "data", 0),
        ({"data": [b"a", b"b"]}, "data", None),
        ({"tags": [{"t": object()}]}, "tags.t", 0),
        ({"bogus": [1]}, "bogus", None),
    ],
)
def test_bad_write_names_the_field_and_keeps_what_is_stored(
    stored: lamina.EngineHandle, change: dict[str, Any], field: str, row: int | None
) -> None:
    before = sorted(e.order() for e in stored.query())
    with pytest.raises(lamina.InvalidInputError) as ei:
        stored.write({**GOOD, **change})
    assert ei.value.field == field
    if row is not None:
        assert ei.value.row == row
    assert sorted(e.order() for e in stored.query()) == before
    assert stored.stats().buffered_rows == 0


def test_missing_column_is_named(stored: lamina.EngineHandle) -> None:
    with pytest.raises(lamina.InvalidInputError) as ei:
        stored.write({k: v for k, v in GOOD.items() if k != "key"})
    assert ei.value.field == "key"


def test_batch_that_is_not_a_mapping_is_refused(stored: lamina.EngineHandle) -> None:
    with pytest.raises(lamina.InvalidInputError) as ei:
        stored.write([1, 2, 3])  # type: ignore[arg-type]
    assert ei.value.field == "batch"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"series": "1"}, "series"),
        ({"series": [1, None]}, "series"),
        ({"key_min": 5, "key_max": 4}, "key_min"),
        ({"key_min": 1.0}, "key_min"),
        ({"order": "up"}, "order"),
        ({"limit": -1}, "limit"),
        ({"start": "now"}, "start"),
        ({"tags": ["svc"]}, "tags"),
        ({"after": (1,)}, "after"),
    ],
)
def test_bad_query_names_the_field(stored: lamina.EngineHandle, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(lamina.InvalidInputError) as ei:
        stored.query(**kwargs)
    assert ei.value.field == field


def test_bad_batch_size_is_refused(stored: lamina.EngineHandle) -> None:
    with pytest.raises(lamina.InvalidInputError) as ei:
        next(iter_batches(stored, batch_size=0))
    assert ei.value.field == "batch_size"
