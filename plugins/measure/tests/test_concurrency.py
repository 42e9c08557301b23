"""Queries racing flushes and merges see every point once, at its winning version.

Deterministic interleavings first (a query run from a hook inside the flush's part write and
inside the merge's publication, same thread, as the trace suite does), then a short threaded run
where a writer rewrites every point with a higher version each round while readers query: each
answer must be one whole round (a snapshot never mixes two rounds nor shows a point twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import lamina
import lamina.table

HOSTS = [f"h{i}" for i in range(20)]


def _round(t0: int, version: int) -> dict[str, Any]:
    return {
        "timestamp": [t0 + k for _ in HOSTS for k in range(5)],
        "version": [version] * (5 * len(HOSTS)),
        "value": [version] * (5 * len(HOSTS)),
        "tags": [{"host": h} for h in HOSTS for _ in range(5)],
    }


@pytest.fixture
def cpu(open_store: Callable[..., lamina.Store]) -> lamina.EngineHandle:
    h = open_store().engine("measure")
    h.define("cpu", entity=["host"], fields={"value": "int64"})
    return h


def _versions(h: lamina.EngineHandle) -> list[int]:
    return h.query(dataset="cpu").version.tolist()


def test_a_query_inside_a_flush_sees_each_point_once_at_its_newest_version(
    cpu: lamina.EngineHandle, t0: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu.write(_round(t0, 1), dataset="cpu")
    cpu.flush()
    cpu.write(_round(t0, 2), dataset="cpu")
    seen: list[list[int]] = []
    orig = lamina.table.write_mem_part

    def hooked(*args: Any, **kwargs: Any) -> Any:
        seen.append(_versions(cpu))  # the rows being flushed are in the "flushing" list here
        return orig(*args, **kwargs)

    monkeypatch.setattr(lamina.table, "write_mem_part", hooked)
    cpu.flush()
    assert seen == [[2] * 100]
    assert _versions(cpu) == [2] * 100


def test_a_query_inside_a_merge_sees_each_point_once_at_its_newest_version(
    cpu: lamina.EngineHandle, t0: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for v in (3, 1, 2):  # the newest data holds a lower version than an older part
        cpu.write(_round(t0, v), dataset="cpu")
        cpu.flush()
    seen: list[list[int]] = []
    orig = lamina.table.publish

    def hooked(*args: Any, **kwargs: Any) -> Any:
        out = orig(*args, **kwargs)  # the merged part is complete on disk, not yet live
        seen.append(_versions(cpu))
        return out

    monkeypatch.setattr(lamina.table, "publish", hooked)
    assert cpu.merge_now() == 1
    assert seen == [[3] * 100]
    assert _versions(cpu) == [3] * 100


def test_threaded_queries_always_see_one_whole_round(cpu: lamina.EngineHandle, t0: int) -> None:
    rounds = 12
    cpu.write(_round(t0, 0), dataset="cpu")
    done = threading.Event()
    bad: list[Any] = []
    answers = [0]

    def reader() -> None:
        while not done.is_set():
            r = cpu.query(dataset="cpu")
            vs = set(r.version.tolist())
            keys = set(zip(r.series.tolist(), r.timestamp.tolist(), strict=True))
            if (
                len(r) != 100
                or len(vs) != 1
                or len(keys) != 100
                or r.fields["value"].tolist() != r.version.tolist()
            ):
                bad.append((len(r), sorted(vs)))
            answers[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        for v in range(1, rounds + 1):
            cpu.write(_round(t0, v), dataset="cpu")
            if v % 2:
                cpu.flush()
            if v % 4 == 0:
                cpu.merge_now()
    finally:
        done.set()
        for th in threads:
            th.join()
    assert not bad, bad[:3]
    assert answers[0] > 0
    assert _versions(cpu) == [rounds] * 100
