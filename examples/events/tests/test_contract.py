"""The contract suites on the events engine, inherited from `lamina.testing`: the corruption
contract damages one part in every way the core knows (torn files, flipped bits, missing commit
record...) and checks the part is quarantined once, healthy events survive and merges go on; the
crash contract cuts the power at every file operation, kills a real writer process and fuzzes
the parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing import CorruptionContract, CrashContract, EngineContract, MergeContract
from lamina_events import Event
from lamina_events.plugin import ENGINE

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z: every batch lands in one daily segment
EVENTS_PER_SOURCE = 3


def _row(e: Event) -> tuple[Any, ...]:
    tags = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in e.tags.items()))
    return (e.source, e.ts, e.kind, e.body, tags)


class EventsSamples:
    """The fixtures every contract suite takes, for the events engine."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        return ENGINE

    @pytest.fixture
    def sample_batches(self) -> list[dict[str, list[Any]]]:
        """Three batches of 36 sources (one block each) x 3 events; neighbouring batches share 12
        sources, and every batch repeats one event of the previous batch verbatim, so merges both
        copy blocks raw and run the equal-key rule (which drops the repeats)."""
        out = []
        for p in range(3):
            cols: dict[str, list[Any]] = {c: [] for c in ("source", "ts", "kind", "body", "tags")}
            for s in range(p * 24, p * 24 + 36):
                for k in range(EVENTS_PER_SOURCE):
                    repeat = k == 0 and p > 0 and s < p * 24 + 12  # also written by batch p - 1
                    batch = p - 1 if repeat else p
                    cols["source"].append(b"host-%04d" % s)
                    cols["ts"].append(T0 + s * 10**6 + k * 1000 + (0 if repeat else batch * 10**9))
                    cols["kind"].append(("login", "click", "error")[k])
                    cols["body"].append(
                        b'{"user": %d, "n": %d, "b": %d}' % (s, k, batch) + b"." * ((s + k) % 7)
                    )
                    tags: dict[str, Any] = {"env": "prod" if s % 3 else "dev", "status": 200 + k}
                    if (s + k) % 5 == 0:
                        tags["sampled"] = True
                    cols["tags"].append(tags)
            out.append(cols)
        return out

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        return lambda handle: sorted(_row(e) for e in handle.query())

    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        return lambda handle, start, end: sorted(_row(r) for r in handle.query(start=start, end=end))

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        return lambda row: row[1]


class TestEventsCorruption(EventsSamples, CorruptionContract):
    pass


class TestEventsEngine(EventsSamples, EngineContract):
    pass


class TestEventsMerges(EventsSamples, MergeContract):
    pass


class TestEventsCrash(EventsSamples, CrashContract):
    @pytest.fixture
    def torture_batch(self, sample_batches: list[dict[str, list[Any]]]) -> Callable[[int], Any]:
        """The kill -9 test writes batch after batch; identical events are stored once, so each
        batch gets its own bodies (a lost batch must change what a query returns)."""

        def batch(seq: int) -> dict[str, list[Any]]:
            b = sample_batches[seq % len(sample_batches)]
            return {**b, "body": [body + b" #%d" % seq for body in b["body"]]}

        return batch
