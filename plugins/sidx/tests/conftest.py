"""Fixtures of the sidx engine's suite.

Stores are built with the sidx engine passed explicitly (no entry-point scan), without the
background thread, and closed at teardown. Helpers are fixtures because the suite runs with
`--import-mode=importlib`, where test modules cannot import each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing.fixtures import open_store_fixture
from lamina_sidx import Entry
from lamina_sidx.plugin import ENGINE

#: 2023-11-14T22:13:20Z: every test timestamp is an offset from here (one daily segment).
T0 = 1_700_000_000_000_000_000


@pytest.fixture
def t0() -> int:
    return T0


#: Factory: `open_store(*engines, path=None, fs=None)` (default: the sidx engine); every store it
#: opens is closed at teardown.
open_store = open_store_fixture(ENGINE)


@pytest.fixture
def sidx(open_store: Callable[..., lamina.Store]) -> lamina.EngineHandle:
    return open_store().engine("sidx")


def batch_of(entries: list[Entry]) -> dict[str, list[Any]]:
    return {
        "series": [e.series for e in entries],
        "key": [e.key for e in entries],
        "timestamp": [e.timestamp for e in entries],
        "data": [e.data for e in entries],
        "tags": [dict(e.tags) for e in entries],
    }


@pytest.fixture
def batch() -> Callable[[list[Entry]], dict[str, list[Any]]]:
    return batch_of


def random_entries(
    rng: random.Random, n: int, *, series: int = 6, keys: int = 400, span_ns: int = 10**6
) -> list[Entry]:
    """Entries with many duplicate keys (ties) and a few tags, all in one daily segment."""
    out = []
    for _ in range(n):
        tags: dict[str, Any] = {"svc": f"svc-{rng.randrange(3)}"}
        if rng.random() < 0.3:
            tags["err"] = rng.random() < 0.5
        out.append(
            Entry(
                series=rng.randrange(series) - 2,
                key=rng.randrange(keys) - keys // 2,
                timestamp=T0 + rng.randrange(span_ns),
                data=b"trace-%06d" % rng.randrange(10**6),
                tags=tags,
            )
        )
    return out


@pytest.fixture
def entries_of() -> Callable[..., list[Entry]]:
    return random_entries


def model_query(
    entries: list[Entry],
    *,
    series: Any = None,
    key_min: int | None = None,
    key_max: int | None = None,
    start: int | None = None,
    end: int | None = None,
    tags: dict[str, Any] | None = None,
    order: str = "asc",
    limit: int | None = None,
) -> list[tuple[Any, ...]]:
    """What the engine must answer, computed naively (as `Entry.order` tuples)."""
    sers = None if series is None else ({series} if isinstance(series, int) else set(series))

    def ok(e: Entry) -> bool:
        return (
            (sers is None or e.series in sers)
            and (key_min is None or e.key >= key_min)
            and (key_max is None or e.key <= key_max)
            and (start is None or e.timestamp >= start)
            and (end is None or e.timestamp < end)
            and all(
                t in e.tags and e.tags[t] == v and type(e.tags[t]) is type(v) for t, v in (tags or {}).items()
            )
        )

    out = sorted((e.order() for e in entries if ok(e)), reverse=order == "desc")
    return out[:limit] if limit is not None else out


@pytest.fixture
def model() -> Callable[..., list[tuple[Any, ...]]]:
    return model_query
