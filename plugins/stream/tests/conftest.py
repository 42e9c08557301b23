"""Fixtures of the stream engine's suite.

Stores are built with the stream engine passed explicitly (no entry-point scan), without the
background thread, and closed at teardown. Helpers are fixtures because the suite runs with
`--import-mode=importlib`, where test modules cannot import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

import lamina
from lamina.testing.fixtures import open_store_fixture
from lamina_stream import Element
from lamina_stream.plugin import ENGINE

#: 2023-11-14T22:13:20Z: every test timestamp is an offset from here (one daily segment).
T0 = 1_700_000_000_000_000_000


@pytest.fixture
def t0() -> int:
    return T0


#: Factory: `open_store(*engines, path=None, fs=None)` (default: the stream engine); every store it
#: opens is closed at teardown.
open_store = open_store_fixture(ENGINE)


@pytest.fixture
def store(open_store: Callable[..., lamina.Store]) -> lamina.Store:
    return open_store()


@pytest.fixture
def streams(store: lamina.Store) -> lamina.EngineHandle:
    return store.engine("stream")


Row = tuple[Mapping[str, Any], int, str, Mapping[str, Any]]


def batch_of(rows: Iterable[Row]) -> dict[str, list[Any]]:
    """A columnar batch from (series, timestamp, element_id, tags) tuples."""
    cols: dict[str, list[Any]] = {c: [] for c in ("series", "timestamp", "element_id", "tags")}
    for r in rows:
        for c, v in zip(cols, r, strict=True):
            cols[c].append(v)
    return cols


@pytest.fixture
def batch() -> Callable[[Iterable[Row]], dict[str, list[Any]]]:
    return batch_of


def element_key(e: Element) -> tuple[Any, ...]:
    """A hashable, totally ordered view of an element (tags typed: "200" and 200 differ)."""
    tags = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in e.tags.items()))
    return (e.timestamp, e.series_id, e.element_id, tags)


@pytest.fixture
def key_of_element() -> Callable[[Element], tuple[Any, ...]]:
    return element_key
