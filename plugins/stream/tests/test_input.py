"""Bad input raises `InvalidInputError` naming the field (and row) and loses nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina import InvalidInputError
from lamina_stream import Eq, In, Range

GOOD = {"service": "api", "host": "h1"}
ONE = {"series": [GOOD], "timestamp": [1], "element_id": ["x"]}


def _stored(h: lamina.EngineHandle) -> list[tuple[int, str]]:
    return [(e.timestamp, e.element_id) for e in h.query()]


@pytest.fixture
def seeded(streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int) -> lamina.EngineHandle:
    streams.write(batch([(GOOD, t0, "kept", {"level": "INFO"})]))
    streams.flush()
    return streams


@pytest.mark.parametrize(
    ("bad", "field", "row"),
    [
        ({"series": [GOOD], "timestamp": [1]}, "element_id", None),
        ({**ONE, "extra": [1]}, "extra", None),
        ({"series": [GOOD], "timestamp": [1.5], "element_id": ["x"]}, "timestamp", 0),
        ({"series": [GOOD], "timestamp": [-1], "element_id": ["x"]}, "timestamp", 0),
        ({"series": [GOOD, GOOD], "timestamp": [1, 2], "element_id": ["x", ""]}, "element_id", 1),
        ({"series": [GOOD], "timestamp": [1], "element_id": [b"x"]}, "element_id", 0),
        ({"series": [GOOD], "timestamp": [1], "element_id": ["x" * 300]}, "element_id", 0),
        ({"series": [{}], "timestamp": [1], "element_id": ["x"]}, "series", 0),
        ({"series": [{"service": 1.5}], "timestamp": [1], "element_id": ["x"]}, "series.service", 0),
        ({"series": [{"service": None}], "timestamp": [1], "element_id": ["x"]}, "series", 0),
        ({"series": [GOOD, "api"], "timestamp": [1, 2], "element_id": ["x", "y"]}, "series", 1),
        ({"series": [GOOD], "timestamp": [1, 2], "element_id": ["x", "y"]}, "series", None),
        ({"series": {"service": ["a", "b"]}, "timestamp": [1], "element_id": ["x"]}, "series.service", None),
        (
            {"series": [GOOD], "timestamp": [1], "element_id": ["x"], "tags": [{"level": True}]},
            "tags.level",
            0,
        ),
        ({**ONE, "tags": [{"n": 2**64}]}, "tags.n", 0),
        ({**ONE, "tags": [{"host": "h9"}]}, "tags.host", 0),
        ({**ONE, "tags": [[1]]}, "tags", 0),
        ({**ONE, "tags": [{"labels": ["a", 1]}]}, "tags.labels", 0),
        ({**ONE, "tags": [{"labels": {"a"}}]}, "tags.labels", 0),
        ({"series": [{"labels": ["a"]}], "timestamp": [1], "element_id": ["x"]}, "series.labels", 0),
        ("not a batch", "batch", None),
    ],
)
def test_bad_batch_names_the_field_and_loses_nothing(
    seeded: lamina.EngineHandle, bad: Any, field: str, row: int | None, t0: int
) -> None:
    before = _stored(seeded)
    with pytest.raises(InvalidInputError) as e:
        seeded.write(bad)
    assert e.value.field == field
    if row is not None:
        assert e.value.row == row
    seeded.flush()
    assert _stored(seeded) == before == [(t0, "kept")]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": 1.5}, "start"),
        ({"order": "up"}, "order"),
        ({"limit": -1}, "limit"),
        ({"projection": "level"}, "projection"),
        ({"element_ids": [b"x"]}, "element_ids"),
        ({"where": {"level": 1.5}}, "where.level"),
        ({"where": 42}, "where"),
        ({"where": {"": 1}}, "where"),
        ({"series": [{"service": 1.5}]}, "series.service"),
        ({"series": "api"}, "series"),
    ],
)
def test_bad_queries_name_the_field(seeded: lamina.EngineHandle, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        seeded.query(**kwargs)
    assert e.value.field == field


def test_filter_constructors_validate() -> None:
    with pytest.raises(InvalidInputError, match="int"):
        Range("n", ge="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        In("level", [None])
    with pytest.raises(InvalidInputError):
        Eq("", "x")
    with pytest.raises(InvalidInputError):
        Eq("level", 1.5)


def test_mapping_where_is_eq_and_in(seeded: lamina.EngineHandle) -> None:
    assert [e.element_id for e in seeded.query(where={"level": "INFO"})] == ["kept"]
    assert [e.element_id for e in seeded.query(where={"level": ["WARN", "INFO"]})] == ["kept"]
    assert seeded.query(where={"level": "WARN"}) == []
