"""Behaviour of the events engine: write, flush, query, merge, and refused input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import lamina
from lamina_events import Event
from lamina_events.plugin import ENGINE

T0 = 1_700_000_000_000_000_000


def batch(*events: tuple[bytes, int, str, bytes, dict[str, Any]]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {"source": [], "ts": [], "kind": [], "body": [], "tags": []}
    for e in events:
        for name, value in zip(cols, e, strict=True):
            cols[name].append(value)
    return cols


@pytest.fixture
def store(tmp_path: Any) -> Iterator[lamina.Store]:
    # the engine is passed explicitly: no entry-point scan, no background thread
    with lamina.Store(str(tmp_path / "store"), engines=[ENGINE], background=False) as s:
        yield s


@pytest.fixture
def ev(store: lamina.Store) -> lamina.EngineHandle:
    return store.engine("events")


def bodies(events: list[Event]) -> list[bytes]:
    return [e.body for e in events]


@pytest.fixture
def loaded(ev: lamina.EngineHandle) -> lamina.EngineHandle:
    """Two flushed parts and one buffered event (every query must see all of them)."""
    ev.write(batch((b"web", T0 + 10, "login", b"a", {"user": 1}), (b"db", T0 + 30, "error", b"b", {})))
    ev.flush()
    ev.write(batch((b"web", T0 + 20, "click", b"c", {"user": 1, "x": 2.5})))
    ev.flush()
    ev.write(batch((b"cron", T0 + 40, "error", b"d", {"code": 3})))
    return ev


def test_written_events_come_back_oldest_first_with_their_tags(loaded):
    got = loaded.query()
    assert bodies(got) == [b"a", b"c", b"b", b"d"]
    assert got[1] == Event(b"web", T0 + 20, "click", b"c", {"user": 1, "x": 2.5})


def test_time_range_is_start_inclusive_end_exclusive(loaded):
    assert bodies(loaded.query(start=T0 + 10, end=T0 + 30)) == [b"a", b"c"]
    assert bodies(loaded.query(start=T0 + 30)) == [b"b", b"d"]
    assert loaded.query(start=T0 + 30, end=T0 + 30) == []


def test_kind_source_and_limit_filters(loaded):
    assert bodies(loaded.query(kind="error")) == [b"b", b"d"]
    assert bodies(loaded.query(kind=["login", "click"])) == [b"a", b"c"]
    assert bodies(loaded.query(source=b"web")) == [b"a", b"c"]
    assert loaded.query(source=b"nobody") == []
    assert bodies(loaded.query(kind="error", limit=1)) == [b"b"]
    assert loaded.query(limit=0) == []


def test_merge_keeps_every_event_and_leaves_one_part(loaded):
    before = loaded.query()
    loaded.flush()
    assert loaded.merge_now() == 1
    assert len(loaded.tables()[0].live_parts) == 1
    assert loaded.query() == before


def test_identical_events_are_stored_once_after_flush_and_merge(ev):
    same = (b"web", T0 + 1, "login", b"x", {"user": 7})
    ev.write(batch(same, same, (b"web", T0 + 1, "login", b"x", {"user": True})))
    assert len(ev.query()) == 2  # unflushed rows already follow the rule
    ev.flush()
    ev.write(batch(same))
    ev.flush()
    assert len(ev.query()) == 2  # two parts each hold one copy: answered once
    ev.merge_now()
    assert [e.tags for e in ev.query()] == [{"user": 7}, {"user": True}]
    assert ev.stats().rows == 2  # the merge dropped the stored copy


def test_events_stored_in_a_store_reopened_from_disk(tmp_path):
    path = str(tmp_path / "s")
    with lamina.Store(path, engines=[ENGINE], background=False) as s:
        s.engine("events").write(batch((b"web", T0, "login", b"a", {})))
        s.engine("events").flush()
    with lamina.Store(path, engines=[ENGINE], background=False) as s:
        assert bodies(s.engine("events").query()) == [b"a"]


@pytest.mark.parametrize(
    ("bad", "field", "row"),
    [
        (batch((b"", T0, "login", b"", {})), "source", 0),
        (batch((b"w", T0, "ok", b"", {}), (b"w" * 256, T0, "login", b"", {})), "source", 1),
        (batch((b"w", T0, "", b"", {})), "kind", 0),
        (batch((b"w", T0, "k" * 65, b"", {})), "kind", 0),
        ([("w", T0)], "batch", None),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(ev, bad, field, row):
    with pytest.raises(lamina.InvalidInputError) as exc:
        ev.write(bad)
    assert exc.value.field == field and exc.value.row == row
    assert ev.query() == []


def test_bad_query_arguments_are_refused(ev):
    for kwargs, field in (
        ({"start": "yesterday"}, "start"),
        ({"limit": -1}, "limit"),
        ({"kind": [1]}, "kind"),
        ({"source": "web"}, "source"),
    ):
        with pytest.raises(lamina.InvalidInputError) as exc:
            ev.query(**kwargs)
        assert exc.value.field == field
