"""The corruption contract (lamina.testing.contract) on the trace engine: a torn `spans.bin`, a
flipped bit in any file, a part without its commit record... never panics, never crash-loops and
never takes a healthy part's spans with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing import CorruptionContract, CrashContract, EngineContract, MergeContract
from lamina_trace import Span
from lamina_trace.plugin import ENGINE

T0 = 1_700_000_000_000_000_000
SPANS_PER_TRACE = 2


def _row(s: Span) -> tuple[Any, ...]:
    tags = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in s.tags.items()))
    return (s.trace_id, s.span_id, s.timestamp, s.duration, s.payload, tags)


class TraceSamples:
    """The fixtures every contract suite takes, for the trace engine."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        return ENGINE

    @pytest.fixture
    def sample_batches(self) -> list[dict[str, list[Any]]]:
        """Three batches of 36 traces (one block each) x 2 spans; neighbouring batches share 12
        traces, so merges both copy blocks raw and concatenate equal trace IDs."""
        out = []
        for p in range(3):
            cols: dict[str, list[Any]] = {
                c: [] for c in ("trace_id", "span_id", "timestamp", "duration", "payload", "tags")
            }
            for t in range(p * 24, p * 24 + 36):
                for s in range(SPANS_PER_TRACE):
                    n = len(cols["trace_id"])
                    cols["trace_id"].append(b"trace-%04d" % t)
                    cols["span_id"].append(b"b%d-s%d" % (p, n))
                    cols["timestamp"].append(T0 + p * 10**9 + n * 1000)
                    cols["duration"].append(100 + (n % 7))
                    cols["payload"].append(b'{"op":"GET /api/%d","b":%d}' % (t, p) + b"." * (n % 11))
                    tags: dict[str, Any] = {"service": f"svc-{t % 4}", "status": 200 + 100 * (s % 3)}
                    if n % 5 == 0:
                        tags["error"] = True
                    cols["tags"].append(tags)
            out.append(cols)
        return out

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        return lambda handle: sorted(_row(s) for s in handle.query())

    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        return lambda handle, start, end: sorted(_row(r) for r in handle.query(start=start, end=end))

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        return lambda row: row[2]


class TestTraceCorruption(TraceSamples, CorruptionContract):
    pass


class TestTraceEngine(TraceSamples, EngineContract):
    pass


class TestTraceMerges(TraceSamples, MergeContract):
    pass


class TestTraceCrash(TraceSamples, CrashContract):
    """The crash contract (lamina.testing.crash_contract) on the trace engine: crash at every
    file-system operation of every short workload, and I/O errors at every operation."""
