"""sidx queries checked against a naive model over random entries: series + key range, time
range, tag filter, asc/desc, limits with ties, across flushed parts, merges and unflushed rows."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina_sidx import Entry, iter_batches

T0 = 1_700_000_000_000_000_000


def _random_query(rng: random.Random) -> dict[str, Any]:
    q: dict[str, Any] = {}
    r = rng.random()
    if r < 0.5:
        q["series"] = rng.randrange(6) - 2
    elif r < 0.8:
        q["series"] = [rng.randrange(6) - 2 for _ in range(rng.randrange(1, 4))]
    if rng.random() < 0.7:
        a = rng.randrange(400) - 200
        q["key_min"] = a
        q["key_max"] = a + rng.randrange(120)
    elif rng.random() < 0.5:
        q["key_max"] = rng.randrange(400) - 200
    if rng.random() < 0.3:
        s = T0 + rng.randrange(10**6)
        q["start"], q["end"] = s, s + rng.randrange(5 * 10**5)
    if rng.random() < 0.3:
        q["tags"] = {"svc": f"svc-{rng.randrange(3)}"}
    if rng.random() < 0.2:
        q["tags"] = {**q.get("tags", {}), "err": True}
    q["order"] = rng.choice(["asc", "desc"])
    if rng.random() < 0.5:
        q["limit"] = rng.choice([0, 1, 3, 20, 100])
    return q


def _orders(entries: list[Entry]) -> list[tuple[Any, ...]]:
    return [e.order() for e in entries]


def test_random_queries_match_the_model_across_flushes_merges_and_buffer(
    sidx: lamina.EngineHandle,
    entries_of: Callable[..., list[Entry]],
    batch: Callable[[list[Entry]], dict[str, Any]],
    model: Callable[..., list[tuple[Any, ...]]],
) -> None:
    rng = random.Random(7)
    written: list[Entry] = []
    for phase in range(4):
        for _ in range(3):
            es = entries_of(rng, 900)
            sidx.write(batch(es))
            written += es
            if phase < 3:
                sidx.flush()
        if phase == 1:
            sidx.merge_now(force=True)
        for _ in range(40):
            q = _random_query(rng)
            got = sidx.query(**q)
            assert _orders(got) == model(written, **q), q
            if q.get("limit") is None:
                # the order also holds entry by entry
                keys = [e.key for e in got]
                assert keys == sorted(keys, reverse=q["order"] == "desc")


def test_full_scan_returns_every_entry_once(
    sidx: lamina.EngineHandle, entries_of: Callable[..., list[Entry]], batch: Callable[..., Any]
) -> None:
    rng = random.Random(3)
    es = entries_of(rng, 2500)
    sidx.write(batch(es[:1000]))
    sidx.flush()
    sidx.write(batch(es[1000:]))
    assert sorted(_orders(sidx.query())) == sorted(e.order() for e in es)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_batches_concatenate_to_the_whole_answer_even_with_merges_between_batches(
    sidx: lamina.EngineHandle,
    entries_of: Callable[..., list[Entry]],
    batch: Callable[..., Any],
    model: Callable[..., list[tuple[Any, ...]]],
    order: str,
) -> None:
    rng = random.Random(11)
    es = entries_of(rng, 3000, keys=50)  # ~60 entries per key: batches end inside runs of ties
    for i in range(3):
        sidx.write(batch(es[i * 1000 : (i + 1) * 1000]))
        sidx.flush()
    got: list[Entry] = []
    for n, b in enumerate(iter_batches(sidx, batch_size=37, series=[0, 1], key_min=-20, order=order)):
        assert 0 < len(b) <= 37
        got += b
        if n == 3:
            sidx.merge_now(force=True)  # physical order changes; content order does not
    assert _orders(got) == model(es, series=[0, 1], key_min=-20, order=order)


def test_key_range_prunes_parts_and_blocks(
    sidx: lamina.EngineHandle, batch: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts whose key range misses the query are not opened; in the others, only blocks with a
    key in range have their data.bin frame read."""
    # three parts with disjoint key ranges, one series, 10 blocks each
    for p in range(3):
        es = [Entry(1, p * 100_000 + i, T0 + i, b"d%d" % i) for i in range(10 * 1024)]
        sidx.write(batch(es))
        sidx.flush()
    reads: list[tuple[str, int]] = []
    orig = lamina.PartReader.read_block

    def spy(self: lamina.PartReader, i: int, *a: Any, **k: Any) -> Any:
        reads.append((self.name, i))
        return orig(self, i, *a, **k)

    monkeypatch.setattr(lamina.PartReader, "read_block", spy)
    got = sidx.query(series=1, key_min=100_000 + 2048, key_max=100_000 + 2050)
    assert [e.key for e in got] == [100_000 + 2048, 100_000 + 2049, 100_000 + 2050]
    assert len(reads) == 1  # one block of one part
    grans = []
    orig_gc = lamina.PartReader.granule_column

    def spy_gc(self: lamina.PartReader, g: int, col: str) -> Any:
        grans.append(self.name)
        return orig_gc(self, g, col)

    monkeypatch.setattr(lamina.PartReader, "granule_column", spy_gc)
    sidx.query(series=1, key_min=200_000, key_max=200_005)
    assert len(set(grans)) == 1  # the two other parts were pruned by their metadata key range


def test_series_not_in_a_part_reads_nothing_from_it(
    sidx: lamina.EngineHandle, batch: Callable[..., Any]
) -> None:
    sidx.write(batch([Entry(1, 5, T0, b"a"), Entry(3, 5, T0, b"b")]))
    sidx.flush()
    assert sidx.query(series=2) == []
    assert [e.data for e in sidx.query(series=[3, 1])] == [b"a", b"b"]  # key tie: by series


def test_entries_in_two_segments_are_both_found(sidx: lamina.EngineHandle, batch: Callable[..., Any]) -> None:
    day = 86_400 * 10**9
    sidx.write(batch([Entry(1, 9, T0, b"d1"), Entry(1, 1, T0 + day, b"d2")]))
    sidx.flush()
    assert [e.data for e in sidx.query(series=1)] == [b"d2", b"d1"]
    assert [e.data for e in sidx.query(series=1, start=T0 + day)] == [b"d2"]
