"""The contract suites (lamina.testing) on the sidx engine. Corruption: a torn `data.bin` or
`keys.bin`, a flipped bit in any file, a part without its commit record... never panics, never
crash-loops and never takes a healthy part's entries with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing import CorruptionContract, CrashContract, EngineContract, MergeContract
from lamina_sidx.plugin import make_engine

T0 = 1_700_000_000_000_000_000


class SidxSamples:
    """The fixtures every contract suite takes, for the sidx engine."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        # small blocks so each part has 30+ blocks, as the contract asks
        import attrs

        from lamina_sidx.schema import SCHEMA

        return make_engine(schema=attrs.evolve(SCHEMA, block_max_rows=8))

    @pytest.fixture
    def sample_batches(self) -> list[dict[str, list[Any]]]:
        """Three batches over 12 series x ~24 entries; neighbouring batches share series, so merges
        both copy blocks raw and interleave equal series by key."""
        out = []
        for p in range(3):
            cols: dict[str, list[Any]] = {c: [] for c in ("series", "key", "timestamp", "data", "tags")}
            for s in range(p * 4, p * 4 + 12):
                for k in range(24):
                    n = len(cols["series"])
                    cols["series"].append(s)
                    cols["key"].append((k * 7919 + p) % 1000)
                    cols["timestamp"].append(T0 + p * 10**9 + n * 1000)
                    cols["data"].append(b"trace-%d-%d-%d" % (p, s, k))
                    cols["tags"].append({"svc": f"svc-{s % 3}", "b": p})
            out.append(cols)
        return out

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        return lambda handle: sorted(e.order() for e in handle.query())

    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        return lambda handle, start, end: sorted(e.order() for e in handle.query(start=start, end=end))

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        return lambda row: row[2]


class TestSidxCorruption(SidxSamples, CorruptionContract):
    pass


class TestSidxEngine(SidxSamples, EngineContract):
    pass


class TestSidxMerges(SidxSamples, MergeContract):
    pass


class TestSidxCrash(SidxSamples, CrashContract):
    pass
