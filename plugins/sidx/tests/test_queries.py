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


@pytest.mark.parametrize("distinct_keys", [120, 6])
def test_limited_queries_over_many_small_blocks_match_the_model(
    distinct_keys: int,
    open_store: Callable[..., lamina.Store],
    entries_of: Callable[..., list[Entry]],
    batch: Callable[..., Any],
    model: Callable[..., list[tuple[Any, ...]]],
) -> None:
    """Blocks of 16 entries: a series spans dozens of blocks per part, so a limited scan stops
    early (asc and desc) and trims blocks; ties at the limit must still come out in content order
    (with 6 distinct keys, runs of equal keys cross many block boundaries)."""
    import attrs

    from lamina_sidx.plugin import make_engine
    from lamina_sidx.schema import SCHEMA

    store = open_store(make_engine(schema=attrs.evolve(SCHEMA, block_max_rows=16)))
    h = store.engine("sidx")
    rng = random.Random(21)
    written: list[Entry] = []
    for i in range(4):
        es = entries_of(rng, 700, keys=distinct_keys)
        h.write(batch(es))
        written += es
        if i < 3:
            h.flush()
        if i == 1:
            h.merge_now(force=True)
    for _ in range(60):
        q = _random_query(rng)
        q["limit"] = rng.choice([1, 2, 5, 17, 40])
        assert _orders(h.query(**q)) == model(written, **q), q
    got: list[Entry] = []
    for b in iter_batches(h, batch_size=13, series=[0, 1, 2], order="desc"):
        got += b
    assert _orders(got) == model(written, series=[0, 1, 2], order="desc")


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_limited_scan_does_not_stop_inside_a_run_of_ties_crossing_blocks(
    open_store: Callable[..., lamina.Store], batch: Callable[..., Any], order: str
) -> None:
    """Block 1 ends with the first entry of key 2 ("z"); block 2 holds more key-2 entries that sort
    before it by content. The 16th entry is a key-2 tie, so block 2 must still be read."""
    import attrs

    from lamina_sidx.plugin import make_engine
    from lamina_sidx.schema import SCHEMA

    h = open_store(make_engine(schema=attrs.evolve(SCHEMA, block_max_rows=16))).engine("sidx")
    sign = 1 if order == "asc" else -1  # desc: mirror the keys so the same layout is scanned backwards
    es = [Entry(1, sign * 1, T0, b"one%02d" % i) for i in range(15)]
    es += [Entry(1, sign * 2, T0, b"z")] + [Entry(1, sign * 2, T0, b"a%02d" % i) for i in range(16)]
    h.write(batch(es))
    h.flush()
    got = h.query(series=1, order=order, limit=16)
    ties_first = b"a00" if order == "asc" else b"z"  # desc reverses content order among ties too
    assert [e.data for e in got] == [*sorted(b"one%02d" % i for i in range(15))[::sign], ties_first]
