"""sidx as the secondary index of a trace dataset, committed in the same transaction.

A trace dataset declares index rules (`IndexRule`), e.g. "span duration per service": for every
span carrying the `service` tag, an entry (series = hash of the service, key = the span's
duration, data = its trace ID, timestamp = the span's start, tags = {service}) goes to the sidx
dataset `<trace dataset>.<rule name>`. `IndexedTraces` couples those datasets into one core flush
group (`Store.couple`, lamina.txn): every flush commits the trace part and its sidx parts
atomically, so after any crash there is never a trace part without its index entries nor an index
entry pointing at a trace part that did not become durable.

What stays independent, and why the invariants still hold:
- Merges of trace and of sidx tables are separate (each atomic in its table): merges preserve rows,
  so an index entry keeps pointing at a trace that exists.
- Retention drops segments per engine. An entry's timestamp is its span's start, so with equal
  retention the entries leave with their traces; with a shorter trace retention an entry can
  outlive its trace. Queries going sidx -> trace therefore skip trace IDs that return no spans,
  and a sidx keep-predicate can drop such entries at merge.

Nothing here touches storage: the core does every byte of I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from lamina import EngineHandle, InvalidInputError, Store
from lamina.query import check_limit
from lamina_sidx.pages import iter_batches

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,40}$")


def _check_name(_i: object, _a: attrs.Attribute, v: str) -> None:  # type: ignore[type-arg]
    if not isinstance(v, str) or not _NAME.match(v):
        raise InvalidInputError("name", f"index rule name {v!r} must match {_NAME.pattern}", engine="sidx")


@attrs.frozen
class IndexRule:
    """One index of a trace dataset: entries keyed by the INT64 span column `key` (e.g.
    "duration", "timestamp"), one series per value of tag `series_tag` (None: one series)."""

    name: str = attrs.field(validator=_check_name)
    key: str
    series_tag: str | None = None


def series_of(value: Any) -> int:
    """The series of a tag value: a stable 64-bit hash of its type and value (1 and "1" differ).
    Entries also carry the value as a tag, so a query filters out hash collisions exactly."""
    digest = hashlib.blake2b(f"{type(value).__name__}:{value!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@attrs.frozen
class IndexedTrace:
    """A trace found through an index: its key (e.g. its slowest span's duration) and spans."""

    trace_id: bytes
    key: int
    spans: list[Any]


class IndexedTraces:
    """Writes to a trace dataset and its sidx indexes, flushed in one transaction."""

    def __init__(
        self,
        store: Store,
        rules: Sequence[IndexRule],
        *,
        dataset: str = "default",
        trace_engine: str = "trace",
        sidx_engine: str = "sidx",
    ) -> None:
        if not rules:
            raise InvalidInputError("rules", "at least one index rule is needed", engine=sidx_engine)
        if len({r.name for r in rules}) != len(rules):
            raise InvalidInputError("rules", "index rule names must be unique", engine=sidx_engine)
        self.traces: EngineHandle = store.engine(trace_engine)
        self.index: EngineHandle = store.engine(sidx_engine)
        self.dataset = dataset
        self.rules = {r.name: r for r in rules}
        schema = self.traces.schema(dataset)
        for r in rules:
            try:
                kind = schema.column(r.key).kind.value
            except KeyError:
                kind = None
            if kind != "int64":
                raise InvalidInputError("key", f"{r.key!r} is not an int64 column of {trace_engine}")
        self.group = store.couple(
            [(trace_engine, dataset), *((sidx_engine, self.index_dataset(r.name)) for r in rules)]
        )

    def index_dataset(self, rule: str) -> str:
        return f"{self.dataset}.{rule}"

    # -- writing -------------------------------------------------------------------------------
    def write(self, batch: Mapping[str, Any]) -> int:
        """Buffer a span batch and its index entries together. Everything is validated before
        anything is buffered; a flush never separates them (they share the group's lock)."""
        tp = self.traces.prepare(batch, dataset=self.dataset)
        sps = [
            self.index.prepare(self._entries(rule, tp.rows), dataset=self.index_dataset(rule.name))
            for rule in self.rules.values()
        ]
        with self.group.lock:
            # index first: if the trace append were refused, an entry without its trace is the
            # harmless direction (queries skip missing traces); the reverse would hide spans
            for sp in sps:
                self.index.append(sp)
            return self.traces.append(tp)

    @staticmethod
    def _entries(rule: IndexRule, rows: Mapping[str, Any]) -> dict[str, Any]:
        n = len(rows["trace_id"])
        if rule.series_tag is None:
            idx = np.arange(n)
            values: list[Any] = [None] * n
        else:
            col = rows.get("tags", {}).get(rule.series_tag)
            if col is None:
                idx, values = np.zeros(0, dtype=np.int64), []
            else:
                idx = np.fromiter((i for i, v in enumerate(col) if v is not None), dtype=np.int64)
                values = [col[i] for i in idx.tolist()]
        return {
            "series": [0 if v is None else series_of(v) for v in values],
            "key": rows[rule.key][idx],
            "timestamp": rows["timestamp"][idx],
            "data": [rows["trace_id"][i] for i in idx.tolist()],
            "tags": [{} if v is None else {rule.series_tag: v} for v in values],
        }

    def flush(self) -> list[int]:
        """Flush the traces and every index in one transaction; durable when it returns."""
        return self.group.flush()

    # -- reading -------------------------------------------------------------------------------
    def top(
        self,
        rule: str,
        value: Any = None,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 20,
        order: str = "desc",
    ) -> list[IndexedTrace]:
        """The `limit` traces with the highest (`order="desc"`) or lowest keys of index `rule`
        among spans whose series tag equals `value` and whose start is in [start, end), ordered
        by (key, trace ID) that way: sidx first (key order, a trace counts with its first entry,
        i.e. its best key), then the traces by ID. Traces that no longer exist (dropped by
        retention) are skipped."""
        r = self.rules.get(rule)
        if r is None:
            raise InvalidInputError("rule", f"unknown index rule {rule!r} (have {sorted(self.rules)})")
        check_limit(limit, engine="sidx", required=True)
        filters: dict[str, Any] = {"start": start, "end": end, "order": order}
        if r.series_tag is not None:
            filters |= {"series": series_of(value), "tags": {r.series_tag: [value]}}
        out: list[IndexedTrace] = []
        seen: set[bytes] = set()
        if limit == 0:
            return out
        batch_size = max(64, 2 * limit)
        desc = order == "desc"
        for entries in iter_batches(
            self.index, batch_size=batch_size, dataset=self.index_dataset(rule), **filters
        ):
            fresh: dict[bytes, int] = {}
            for e in entries:
                if e.data not in seen and e.data not in fresh:
                    fresh[e.data] = e.key
            seen |= set(fresh)
            out += self._fetch(fresh)
            # Done once `limit` traces are found and this batch went past the last one's key:
            # traces tied with it may still follow, and ties are settled by trace ID below.
            if len(out) >= limit:
                bound = sorted((t.key for t in out), reverse=desc)[limit - 1]
                if entries[-1].key != bound:
                    break
        out.sort(key=lambda t: (t.key, t.trace_id), reverse=desc)
        return out[:limit]

    def slowest(
        self, service: Any, *, start: int | None = None, end: int | None = None, limit: int = 20
    ) -> list[IndexedTrace]:
        """ "Slowest `limit` traces of `service`" with spans starting in [start, end), through the
        first rule keyed by duration with a series tag."""
        rule = next(
            (r.name for r in self.rules.values() if r.key == "duration" and r.series_tag is not None), None
        )
        if rule is None:
            raise InvalidInputError("rules", "no index rule keyed by duration per tag", engine="sidx")
        return self.top(rule, service, start=start, end=end, limit=limit)

    def _fetch(self, candidates: Mapping[bytes, int]) -> list[IndexedTrace]:
        if not candidates:
            return []
        spans = self.traces.query(dataset=self.dataset, trace_ids=list(candidates))
        by_id: dict[bytes, list[Any]] = {}
        for s in spans:
            by_id.setdefault(s.trace_id, []).append(s)
        return [IndexedTrace(t, k, by_id[t]) for t, k in candidates.items() if t in by_id]
