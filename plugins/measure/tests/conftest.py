"""Fixtures of the measure engine's suite.

Stores are built on SimFS with the measure engine passed explicitly (no entry-point scan) and no
background thread, and closed at teardown. Helpers are fixtures because the suite runs with
`--import-mode=importlib`, where test modules cannot import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing.fixtures import open_store_fixture
from lamina_measure.plugin import ENGINE

#: 2023-11-14T22:13:20Z: test timestamps are offsets from here (one daily segment).
T0 = 1_700_000_000_000_000_000
HTTP = {
    "entity": ["service", "instance"],
    "fields": {"latency": "float64", "requests": "int64", "code": "string"},
}


@pytest.fixture
def t0() -> int:
    return T0


@pytest.fixture
def http_options() -> dict[str, Any]:
    return HTTP


#: Factory: `open_store(fs=None, root="/store")` -> a store with only the measure engine, on one
#: SimFS shared by every store of the test unless `fs` is given; closed at teardown.
open_store = open_store_fixture(ENGINE, sim=True)


@pytest.fixture
def http(open_store: Callable[..., lamina.Store]) -> lamina.EngineHandle:
    """The measure handle of a fresh store with dataset "http" defined."""
    h = open_store().engine("measure")
    h.define("http", **HTTP)
    return h


@pytest.fixture
def points() -> Callable[..., dict[str, Any]]:
    """points([(service, instance, ts, version, latency, requests, code), ...]) -> a batch."""

    def make(rows: list[tuple[Any, ...]], extra_tags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        tags = [{"service": r[0], "instance": r[1]} for r in rows]
        for t, x in zip(tags, extra_tags or [{}] * len(rows), strict=True):
            t.update(x)
        return {
            "timestamp": [r[2] for r in rows],
            "version": [r[3] for r in rows],
            "latency": [r[4] for r in rows],
            "requests": [r[5] for r in rows],
            "code": [r[6] for r in rows],
            "tags": tags,
        }

    return make
