"""Fixtures of the trace engine's suite.

Stores are built with the trace engine passed explicitly (no entry-point scan), without the
background thread, and closed at teardown. Helpers are handed out as fixtures because the suite
runs with `--import-mode=importlib`, where test modules cannot import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import pytest

import lamina
import lamina.format.part_writer as part_writer
from lamina.testing.fixtures import open_store_fixture
from lamina_trace import Span
from lamina_trace.plugin import ENGINE
from lamina_trace.schema import SCHEMA

#: 2023-11-14T22:13:20Z: every test timestamp is an offset from here (one daily segment).
T0 = 1_700_000_000_000_000_000
SEGMENT = "seg-20231114"


@pytest.fixture
def t0() -> int:
    return T0


def make_engine(block_max_bytes: int | None = None) -> lamina.Engine:
    """The trace engine, optionally with a tiny block cut so one trace spans many blocks."""
    if block_max_bytes is None:
        return ENGINE
    return attrs.evolve(ENGINE, schema=attrs.evolve(SCHEMA, block_max_bytes=block_max_bytes))


@pytest.fixture
def engine_with() -> Callable[..., lamina.Engine]:
    return make_engine


#: Factory: `open_store(*engines, path=None, fs=None)` (default: the trace engine); every store it
#: opens is closed at teardown.
open_store = open_store_fixture(ENGINE)


@pytest.fixture
def store(open_store: Callable[..., lamina.Store]) -> lamina.Store:
    return open_store()


@pytest.fixture
def traces(store: lamina.Store) -> lamina.EngineHandle:
    return store.engine("trace")


@pytest.fixture
def tiny_granules(monkeypatch: pytest.MonkeyPatch) -> int:
    """Cut a granule every 2 blocks.

    DEFAULT_GRANULE_ROWS is patched too, but PartWriter binds it as a default argument at import,
    so today only the block count cuts granules here; tests assert the granule shape they need.
    """
    monkeypatch.setattr(part_writer, "DEFAULT_GRANULE_BLOCKS", 2)
    monkeypatch.setattr(part_writer, "DEFAULT_GRANULE_ROWS", 8)
    return 2


def batch_of(spans: Iterable[Span | Sequence[Any]]) -> dict[str, list[Any]]:
    """A columnar batch from Spans or (trace_id, span_id, timestamp, duration, payload, tags)."""
    cols: dict[str, list[Any]] = {
        c: [] for c in ("trace_id", "span_id", "timestamp", "duration", "payload", "tags")
    }
    for s in spans:
        if isinstance(s, Span):
            s = (s.trace_id, s.span_id, s.timestamp, s.duration, s.payload, s.tags)
        for c, v in zip(cols, s, strict=True):
            cols[c].append(v)
    return cols


@pytest.fixture
def batch() -> Callable[..., dict[str, list[Any]]]:
    return batch_of


def span_key(s: Span) -> tuple[Any, ...]:
    """A hashable, totally ordered view of a span (tags typed: "200" and 200 differ)."""
    tags = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in s.tags.items()))
    return (s.trace_id, s.span_id, s.timestamp, s.duration, s.payload, tags)


@pytest.fixture
def key_of_span() -> Callable[[Span], tuple[Any, ...]]:
    return span_key
