"""The contract suites (lamina.testing) on the stream engine. Corruption: torn files, flipped
bits in any file (the per-block tag filters `tags.tff` included), parts without a commit record...
never panic, never crash-loop and never take a healthy part's elements with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing import CorruptionContract, CrashContract, EngineContract, MergeContract
from lamina_stream import Element
from lamina_stream.plugin import ENGINE

T0 = 1_700_000_000_000_000_000


def _row(e: Element) -> tuple[Any, ...]:
    tags = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in e.tags.items()))
    return (e.series_id, e.timestamp, e.element_id, tags)


class StreamSamples:
    """The fixtures every contract suite takes, for the stream engine."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        return ENGINE

    @pytest.fixture
    def sample_batches(self) -> list[dict[str, Any]]:
        """Three batches over 36 series (one block each) x 3 elements; neighbouring batches share
        12 series, so merges both copy blocks raw and merge equal series."""
        out = []
        for p in range(3):
            cols: dict[str, list[Any]] = {c: [] for c in ("series", "timestamp", "element_id", "tags")}
            for s in range(p * 24, p * 24 + 36):
                for k in range(3):
                    n = len(cols["timestamp"])
                    cols["series"].append({"service": f"svc-{s % 6}", "host": f"h{s}"})
                    cols["timestamp"].append(T0 + p * 10**9 + n * 1000)
                    cols["element_id"].append(f"p{p}-e{n}")
                    tags: dict[str, Any] = {
                        "level": ["INFO", "WARN", "ERROR"][k],
                        "status": 200 + 100 * (n % 4),
                    }
                    if n % 5 == 0:
                        tags["trace"] = b"\x00\x01" + bytes([n % 256])
                    cols["tags"].append(tags)
            out.append(cols)
        return out

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        return lambda handle: sorted(_row(e) for e in handle.query())

    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        return lambda handle, start, end: sorted(_row(e) for e in handle.query(start=start, end=end))

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        return lambda row: row[1]


class TestStreamCorruption(StreamSamples, CorruptionContract):
    pass


class TestStreamEngine(StreamSamples, EngineContract):
    pass


class TestStreamMerges(StreamSamples, MergeContract):
    pass


class TestStreamCrash(StreamSamples, CrashContract):
    pass
