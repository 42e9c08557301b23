"""The contract suites (lamina.testing) on the measure engine. Corruption: a torn
`timestamps.bin`, a flipped bit in `fv.bin` or a tag file, a part without its commit record...
never panics, never crash-loops, never takes a healthy part's points with it, and the ledger is
compared after the highest-version-wins rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing import CorruptionContract, CrashContract, EngineContract, MergeContract
from lamina_measure.plugin import measure_engine

T0 = 1_700_000_000_000_000_000
ENGINE = measure_engine(entity=["host"], fields={"cpu": "float64", "mem": "int64", "state": "string"})


def _row(i: int, series: int, ts: int, version: int, cpu: float, mem: int, state: str, tags: Any) -> tuple:
    return (series, ts, version, cpu, mem, state, tuple(sorted((k, repr(v)) for k, v in tags.items())))


class MeasureSamples:
    """The fixtures every contract suite takes, for one measure (hosts' cpu, mem, state)."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        return ENGINE

    @pytest.fixture
    def sample_batches(self) -> list[dict[str, list[Any]]]:
        """Three batches of 36 hosts (one block each) x 3 points; neighbouring batches share 12
        hosts and some timestamps with a higher version, so merges both copy granules raw and
        resolve versions."""
        out = []
        for p in range(3):
            cols: dict[str, list[Any]] = {
                c: [] for c in ("timestamp", "version", "cpu", "mem", "state", "tags")
            }
            for h in range(p * 24, p * 24 + 36):
                for k in range(3):
                    n = len(cols["timestamp"])
                    cols["timestamp"].append(T0 + k * 10**9 + (h % 5) * 10**6)
                    cols["version"].append(p)
                    cols["cpu"].append(round(0.5 + h / 100 + p, 2))
                    cols["mem"].append(1000 * h + n)
                    cols["state"].append(("ok", "busy", "down")[n % 3])
                    cols["tags"].append({"host": f"h-{h:03d}", "dc": f"dc{h % 2}"})
            out.append(cols)
        return out

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        return lambda handle: _rows(handle.query())

    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        return lambda handle, start, end: _rows(handle.query(start=start, end=end))

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        return lambda row: row[1]


class TestMeasureCorruption(MeasureSamples, CorruptionContract):
    pass


class TestMeasureEngine(MeasureSamples, EngineContract):
    pass


class TestMeasureMerges(MeasureSamples, MergeContract):
    pass


def _rows(res: Any) -> list[Any]:
    """A query result as hashable rows (series, ts, version, fields..., tags)."""
    f = res.fields
    return sorted(
        _row(i, *args)
        for i, args in enumerate(
            zip(
                res.series.tolist(),
                res.timestamp.tolist(),
                res.version.tolist(),
                f["cpu"].tolist(),
                f["mem"].tolist(),
                f["state"].tolist(),
                [{t: v[j] for t, v in res.tags.items() if v[j] is not None} for j in range(len(res))],
                strict=True,
            )
        )
    )


class TestMeasureCrash(MeasureSamples, CrashContract):
    @pytest.fixture
    def torture_batch(self, sample_batches: list[dict[str, list[Any]]]) -> Callable[[int], Any]:
        """Highest version wins, so sample batch `seq mod 3` written again would change nothing:
        batch `seq` carries version `seq` and its own memory values, and overwrites every point
        it names (a lost batch shows as the older values)."""

        def batch(seq: int) -> dict[str, list[Any]]:
            b = sample_batches[seq % len(sample_batches)]
            n = len(b["timestamp"])
            return {**b, "version": [seq] * n, "mem": [m + seq * 10**7 for m in b["mem"]]}

        return batch
