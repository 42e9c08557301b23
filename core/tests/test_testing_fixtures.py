"""The opt-in fixtures module (`lamina.testing.fixtures`) as an engine author's suite uses it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.io.sim import SimFS
from lamina.testing import Ledger
from lamina.testing.kv import KV, kv_batch

pytest_plugins = ["lamina.testing.fixtures"]

T0 = 1_700_000_000_000_000_000
BATCHES = [
    kv_batch([b"a", b"b"], [T0 + 1, T0 + 2]),
    kv_batch([b"b", b"c"], [T0 + 3, T0 + 4]),
    kv_batch([b"d"], [T0 + 5]),
]


def _all(h: lamina.EngineHandle) -> list[Any]:
    return sorted((k, ts, v) for k, ts, v, _ in h.query())


def test_open_store_holds_exactly_the_engines_given(open_store: Callable[..., lamina.Store]) -> None:
    store = open_store(KV)
    assert store.engines == ["kv"]
    with pytest.raises(lamina.UnknownEngineError):
        store.engine("trace")
    with pytest.raises(TypeError):
        open_store()


def test_ledger_tracks_subsets_and_merges(ledger: Callable[..., Ledger]) -> None:
    led = ledger(KV, BATCHES, _all)
    assert [r[0] for r in led.expected([0])] == [b"a", b"b"]
    assert len(led.expected()) == 5
    assert led.expected(merge=True) == led.expected()


def test_damage_helpers_are_the_damage_module(damage: Any) -> None:
    assert callable(damage.flip_bit) and callable(damage.listed_parts)


def test_crash_points_checks_every_cut_and_reports_the_count(
    crash_points: Callable[..., int], open_store: Callable[..., lamina.Store]
) -> None:
    def workload(fs: SimFS, acked: list[Any]) -> None:
        s = open_store(KV, fs=fs, root="/db")
        h = s.engine("kv")
        for b in BATCHES[:2]:
            h.write(b)
            h.flush()
            acked.extend(zip(b["key"], b["ts"], b["value"], strict=True))
        s.close()

    labels: list[str] = []

    def check(state: SimFS, acked: list[Any], label: str) -> None:
        s = open_store(KV, fs=state, root="/db")
        got = _all(s.engine("kv"))
        s.close()
        for row in acked:
            assert row in got, f"{label}: acknowledged {row} lost"
        labels.append(label)

    n = crash_points(workload, check)
    assert n == len(labels) > 30
    assert {lab.split()[0] for lab in labels} == {"process", "power", "torn"}
