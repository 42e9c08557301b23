"""The stream engine end to end: what is written is what queries return, in the promised order,
through flushes, merges and reopen; duplicates are kept; the series ID is stable."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import xxhash

import lamina
import lamina_stream.plugin as stream_plugin
from lamina.check import check_store
from lamina.format.part_writer import key_of
from lamina.plugins import Registry
from lamina.testing import damage as dmg
from lamina_stream import Element, Eq, Has, QueryStats, series_id
from lamina_stream.plugin import ENGINE
from lamina_stream.query import block_key

API = {"service": "api", "host": "h1"}
DB = {"service": "db", "host": "h2"}


def test_series_id_is_stable_typed_and_order_free() -> None:
    # pinned: the ID is stored in every part, so it must never change between versions
    assert series_id({"service": "api", "host": "h1"}) == series_id({"host": "h1", "service": "api"})
    assert series_id({"a": 1}) != series_id({"a": "1"}) != series_id({"a": b"1"})
    assert series_id({"service": "api"}) == series_id({"service": "api"})
    # the documented encoding, derived independently: sorted names, each length-prefixed name,
    # type byte, length-prefixed payload; xxh3-64 read as a signed int64
    raw = b"".join(
        struct.pack("<I", len(n)) + n + b"s" + struct.pack("<I", len(v)) + v
        for n, v in ((b"host", b"h1"), (b"service", b"api"))
    )
    u = xxhash.xxh3_64_intdigest(raw)
    assert series_id({"service": "api", "host": "h1"}) == (u - 2**64 if u >= 2**63 else u)
    assert series_id({"service": "api", "host": "h1"}) == -2538450255543897629


def test_block_key_matches_the_core_encoding() -> None:
    for sid in (0, 1, -1, 2**63 - 1, -(2**63), 123456789):
        assert block_key(sid) == key_of(ENGINE.schema, sid)


def test_round_trip_through_memory_flush_merge_and_reopen(
    open_store: Callable[..., lamina.Store], batch: Callable[..., Any], t0: int, key_of_element: Any
) -> None:
    store = open_store()
    h = store.engine("stream")
    rows = [
        (API, t0 + 3, "a3", {"level": "INFO", "status": 200}),
        (API, t0 + 1, "a1", {"level": "ERROR", "status": 500, "trace": b"\x00\xff"}),
        (DB, t0 + 2, "d2", {"level": "WARN"}),
    ]
    h.write(batch(rows))
    want = sorted(
        [
            Element(series_id(s), ts, eid, {**tags, **s})  # entity tags are stored as tags too
            for s, ts, eid, tags in rows
        ],
        key=lambda e: e.timestamp,
    )
    assert h.query() == want  # unflushed rows are visible
    h.flush()
    assert h.query() == want
    h.write(batch([(API, t0 + 2, "a2", {"level": "INFO"})]))
    h.flush()
    h.merge_now()
    want2 = sorted(
        [*want, Element(series_id(API), t0 + 2, "a2", {"level": "INFO", **API})], key=key_of_element
    )
    assert sorted(h.query(), key=key_of_element) == want2
    store.close()
    h2 = open_store().engine("stream")
    # t0+2 is a tie between series "api" and "db": ordered by series ID
    got = [e.element_id for e in h2.query()]
    tie = sorted([("a2", series_id(API)), ("d2", series_id(DB))], key=lambda x: x[1])
    assert got == ["a1", tie[0][0], tie[1][0], "a3"]


def test_duplicates_are_all_kept_through_merges(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    row = (API, t0, "same", {"level": "INFO"})
    for _ in range(3):
        streams.write(batch([row, row]))
        streams.flush()
    streams.merge_now()
    got = streams.query()
    assert len(got) == 6 and {e.element_id for e in got} == {"same"}


def test_order_limit_projection_and_element_ids(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    rows = [(API if i % 2 else DB, t0 + i, f"e{i}", {"level": "INFO", "n": i}) for i in range(50)]
    streams.write(batch(rows[:25]))
    streams.flush()
    streams.write(batch(rows[25:]))
    asc = streams.query(limit=5)
    assert [e.element_id for e in asc] == [f"e{i}" for i in range(5)]
    desc = streams.query(order="desc", limit=3, start=t0 + 10, end=t0 + 40)
    assert [e.element_id for e in desc] == ["e39", "e38", "e37"]
    proj = streams.query(limit=1, projection=["n", "missing"])
    assert proj[0].tags == {"n": 0}
    assert [e.element_id for e in streams.query(element_ids=["e7", "e30", "nope"])] == ["e7", "e30"]
    only_api = streams.query(series={"service": "api", "host": "h1"})
    assert {e.element_id for e in only_api} == {f"e{i}" for i in range(1, 50, 2)}
    assert streams.query(series=[API, DB], where=Eq("n", 4)) == [
        Element(series_id(DB), t0 + 4, "e4", {"level": "INFO", "n": 4, **DB})
    ]
    assert streams.query(series={"service": "nope"}) == []


def test_parts_carry_tag_filters_and_series_filter(
    store: lamina.Store, streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    streams.write(batch([(API, t0, "x", {"level": "INFO"})]))
    streams.flush()
    (table,) = dmg.table_dirs(store.fs, store.path, "stream")
    (part,) = dmg.listed_parts(store.fs, table)
    meta = dmg.read_part_meta(store.fs, f"{table}/{part}")
    assert {"tags.tff", "series.filter", "timestamps.bin", "elements.bin"} <= set(meta.files)


def test_deep_check_verifies_stream_parts(
    open_store: Callable[..., lamina.Store], batch: Callable[..., Any], t0: int
) -> None:
    store = open_store()
    h = store.engine("stream")
    h.write(batch([(API, t0 + i, f"e{i}", {"level": "INFO", "n": i}) for i in range(100)]))
    h.flush()
    store.close()
    reg = Registry()
    reg.register_plugin(stream_plugin, "lamina-stream")
    report = check_store(store.path, deep=True, registry=reg)
    assert report.ok, report.problems
    assert report.parts_checked == 1 and report.frames_checked > 0


def test_string_array_tags_round_trip_and_filter(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    """Labels as a list of str are stored as a string array (read back as a tuple); `Has` finds
    the elements whose array contains an item, `Eq` compares whole arrays."""
    streams.write(
        batch(
            [
                (API, t0, "a", {"labels": ["canary", "eu"]}),
                (API, t0 + 1, "b", {"labels": ("eu",)}),
                (DB, t0 + 2, "c", {"labels": "eu"}),  # a plain str is not an array
            ]
        )
    )
    streams.flush()
    assert [e.tags["labels"] for e in streams.query()] == [("canary", "eu"), ("eu",), "eu"]
    assert [e.element_id for e in streams.query(where=Has("labels", "eu"))] == ["a", "b"]
    assert [e.element_id for e in streams.query(where=Has("labels", "canary"))] == ["a"]
    assert [e.element_id for e in streams.query(where=Eq("labels", ("eu",)))] == ["b"]
    assert [e.element_id for e in streams.query(where={"labels": ("canary", "eu")})] == ["a"]
    st = QueryStats()
    assert streams.query(where=Has("labels", "us"), stats=st) == []
    assert st.blocks_read == 0 and st.blocks_pruned_tags == st.blocks_total == 2
