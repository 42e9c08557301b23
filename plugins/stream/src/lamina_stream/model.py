"""What the stream engine stores and returns, and the tag filter expressions its queries take.

A filter is a small tree: `Eq`, `In` and `Range` leaves combined with `And` / `Or`. Each node
answers three questions, from cheapest to dearest:

- `blocks(part)`: which blocks of a part may hold a match, from the core's per-block tag summaries
  (Bloom filters, int min/max) alone, without reading any block;
- `rows(part, g, rows)`: which of the given rows of granule g match, vectorised over the tag
  codes of the granule (a predicate runs once per distinct value of a dictionary-coded tag);
- `matches(tags)`: the plain-Python meaning, on one element's tag dict (documentation and the
  reference the tests compare against).

Equality is typed: the tag value 1 does not equal "1" or b"1" (as in the core's tag storage).
String-array tags (tuples of str) compare whole with `Eq`/`In`; `Has` asks "array contains x".
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import xxhash

from lamina import InvalidInputError, PartReader
from lamina.batch import check_tag_name, check_text

#: Tag value types the stream engine accepts (the core also stores floats and bools; stream
#: schemas, as BanyanDB's, have string, int64 and bytes tags).
VALUE_TYPES: tuple[type, ...] = (str, int, bytes)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


@attrs.frozen
class Element:
    """One stored element: its series (as ID), time, caller-chosen ID and tags (entity tags
    included, so they can be filtered and projected like any other)."""

    series_id: int
    timestamp: int
    element_id: str
    tags: dict[str, Any] = attrs.field(factory=dict, eq=True, hash=False)


@attrs.define
class QueryStats:
    """Filled by a query when passed as `stats=`: how much of the store it had to look at.

    Mutable on purpose: the caller owns it and reads it after the query returns. Counting blocks
    (not timing) is how the tests show that per-block tag summaries skip work.
    """

    parts: int = 0
    blocks_total: int = 0  # blocks of the parts whose time range overlaps the query
    blocks_pruned_time: int = 0
    blocks_pruned_series: int = 0
    blocks_pruned_tags: int = 0
    blocks_pruned_ids: int = 0  # by the per-block element-ID filters
    blocks_read: int = 0  # blocks whose rows were examined
    granules_read: int = 0


def _kind(value: Any) -> bytes:
    return {str: b"s", int: b"i", bytes: b"b"}[type(value)]


def _payload(value: Any) -> bytes:
    if type(value) is str:
        return value.encode()
    if type(value) is int:
        return struct.pack("<q", value)
    return value  # type: ignore[no-any-return]


def series_id(entity: Mapping[str, Any]) -> int:
    """The stable int64 ID of a series: xxh3-64 over its entity tags, sorted by name, each as
    length-prefixed name, type byte and length-prefixed payload (so {"a": 1} and {"a": "1"}
    differ). Stable across processes and versions: it is stored in every part."""
    h = xxhash.xxh3_64()
    for name in sorted(entity):
        v = entity[name]
        n = name.encode()
        p = _payload(v)
        h.update(struct.pack("<I", len(n)) + n + _kind(v) + struct.pack("<I", len(p)) + p)
    u = h.intdigest()
    return u - (1 << 64) if u >= 1 << 63 else u


def _check_value(field: str, v: Any, arrays: bool = True) -> None:
    """A value a stored tag can have: what could never match is a mistake, refused by name
    (and a str that is not valid UTF-8 could not even be hashed for the block filters)."""
    if arrays and type(v) is tuple and all(type(x) is str for x in v):
        for x in v:
            check_text(field, x, engine="stream")
        return  # a whole string array
    if type(v) is str:
        check_text(field, v, engine="stream")
    if type(v) not in VALUE_TYPES:
        raise InvalidInputError(
            field,
            f"filter value must be str, int, bytes or a tuple of str, got {type(v).__name__} {v!r}",
            engine="stream",
        )
    if type(v) is int and not _I64_MIN <= v <= _I64_MAX:
        raise InvalidInputError(field, f"{v} does not fit in int64", engine="stream")


def _check_tag(tag: Any) -> None:
    check_tag_name("where", tag, engine="stream")


class Filter:
    """Base of filter expressions. `a & b` and `a | b` build `And` / `Or`."""

    def blocks(self, part: PartReader) -> np.ndarray:
        raise NotImplementedError

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def matches(self, tags: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def tags(self) -> set[str]:
        raise NotImplementedError

    def __and__(self, other: Filter) -> Filter:
        return And((self, other))

    def __or__(self, other: Filter) -> Filter:
        return Or((self, other))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@attrs.frozen
class Eq(Filter):
    """tag == value (typed)."""

    tag: str
    value: Any

    def __attrs_post_init__(self) -> None:
        _check_tag(self.tag)
        _check_value(f"where.{self.tag}", self.value)

    def blocks(self, part: PartReader) -> np.ndarray:
        return part.blocks_may_match(self.tag, [self.value])

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        want = self.value
        return part.granule_tag_mask(g, self.tag, lambda v: _same(v, want), rows)

    def matches(self, tags: Mapping[str, Any]) -> bool:
        return self.tag in tags and _same(tags[self.tag], self.value)

    def tags(self) -> set[str]:
        return {self.tag}


@attrs.frozen
class In(Filter):
    """tag IN values (typed)."""

    tag: str
    values: tuple[Any, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        _check_tag(self.tag)
        for v in self.values:
            _check_value(f"where.{self.tag}", v)

    def blocks(self, part: PartReader) -> np.ndarray:
        return part.blocks_may_match(self.tag, list(self.values))

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        allowed = {(type(v), v) for v in self.values}
        return part.granule_tag_mask(g, self.tag, lambda v: (type(v), v) in allowed, rows)

    def matches(self, tags: Mapping[str, Any]) -> bool:
        return self.tag in tags and any(_same(tags[self.tag], v) for v in self.values)

    def tags(self) -> set[str]:
        return {self.tag}


@attrs.frozen
class Range(Filter):
    """ge <= tag <= le for int values of tag (None = unbounded); non-int values never match."""

    tag: str
    ge: int | None = None
    le: int | None = None

    def __attrs_post_init__(self) -> None:
        _check_tag(self.tag)
        for name, b in (("ge", self.ge), ("le", self.le)):
            if b is not None:
                if type(b) is not int:
                    raise InvalidInputError(
                        f"where.{self.tag}.{name}", f"must be an int, got {type(b).__name__}", engine="stream"
                    )
                _check_value(f"where.{self.tag}.{name}", b)

    @property
    def _lo(self) -> int:
        return _I64_MIN if self.ge is None else self.ge

    @property
    def _hi(self) -> int:
        return _I64_MAX if self.le is None else self.le

    def blocks(self, part: PartReader) -> np.ndarray:
        r = part.blocks_int_range(self.tag)
        if r is None:
            return np.ones(part.meta.blocks, dtype=bool)
        has, lo, hi = r
        return has & (hi >= self._lo) & (lo <= self._hi)

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        lo, hi = self._lo, self._hi
        return part.granule_tag_mask(g, self.tag, lambda v: type(v) is int and lo <= v <= hi, rows)

    def matches(self, tags: Mapping[str, Any]) -> bool:
        v = tags.get(self.tag)
        return type(v) is int and self._lo <= v <= self._hi

    def tags(self) -> set[str]:
        return {self.tag}


@attrs.frozen
class Has(Filter):
    """The string-array tag contains `item` (non-array values never match)."""

    tag: str
    item: str

    def __attrs_post_init__(self) -> None:
        _check_tag(self.tag)
        if type(self.item) is not str:
            raise InvalidInputError(
                f"where.{self.tag}", f"Has needs a str item, got {type(self.item).__name__}", engine="stream"
            )
        check_text(f"where.{self.tag}", self.item, engine="stream")

    def blocks(self, part: PartReader) -> np.ndarray:
        # the core files each array item under its str key: a superset of the blocks to read
        return part.blocks_may_match(self.tag, [self.item])

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        item = self.item
        return part.granule_tag_mask(g, self.tag, lambda v: type(v) is tuple and item in v, rows)

    def matches(self, tags: Mapping[str, Any]) -> bool:
        v = tags.get(self.tag)
        return type(v) is tuple and self.item in v

    def tags(self) -> set[str]:
        return {self.tag}


def _terms(terms: Any) -> tuple[Filter, ...]:
    out = tuple(terms)
    for t in out:
        if not isinstance(t, Filter):
            raise InvalidInputError("where", f"expected a filter, got {type(t).__name__}", engine="stream")
    if not out:
        raise InvalidInputError("where", "And/Or need at least one term", engine="stream")
    return out


@attrs.frozen
class And(Filter):
    terms: tuple[Filter, ...] = attrs.field(converter=_terms)

    def blocks(self, part: PartReader) -> np.ndarray:
        out = self.terms[0].blocks(part)
        for t in self.terms[1:]:
            out = out & t.blocks(part)
        return out

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        out = np.ones(len(rows), dtype=bool)
        for t in self.terms:
            live = np.flatnonzero(out)
            if not len(live):
                break
            out[live] = t.rows(part, g, rows[live])  # later terms only see surviving rows
        return out

    def matches(self, tags: Mapping[str, Any]) -> bool:
        return all(t.matches(tags) for t in self.terms)

    def tags(self) -> set[str]:
        return set().union(*(t.tags() for t in self.terms))


@attrs.frozen
class Or(Filter):
    terms: tuple[Filter, ...] = attrs.field(converter=_terms)

    def blocks(self, part: PartReader) -> np.ndarray:
        out = self.terms[0].blocks(part)
        for t in self.terms[1:]:
            out = out | t.blocks(part)
        return out

    def rows(self, part: PartReader, g: int, rows: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows), dtype=bool)
        for t in self.terms:
            rest = np.flatnonzero(~out)
            if not len(rest):
                break
            out[rest] = t.rows(part, g, rows[rest])
        return out

    def matches(self, tags: Mapping[str, Any]) -> bool:
        return any(t.matches(tags) for t in self.terms)

    def tags(self) -> set[str]:
        return set().union(*(t.tags() for t in self.terms))


def as_filter(where: Any) -> Filter | None:
    """`where=` as given: None, a Filter, or a mapping tag -> value (Eq) / list or set of values
    (In), all ANDed."""
    if where is None or isinstance(where, Filter):
        return where
    if isinstance(where, Mapping):
        if not where:
            return None
        terms: list[Filter] = []
        for tag, v in where.items():
            _check_tag(tag)
            # a list or set means IN; a tuple is one string-array value
            terms.append(In(tag, v) if isinstance(v, list | set | frozenset) else Eq(tag, v))
        return terms[0] if len(terms) == 1 else And(terms)
    raise InvalidInputError(
        "where",
        f"expected a Filter or a mapping of tag -> value, got {type(where).__name__}",
        engine="stream",
    )


__all__ = [
    "And",
    "Element",
    "Eq",
    "Filter",
    "Has",
    "In",
    "Or",
    "QueryStats",
    "Range",
    "as_filter",
    "series_id",
]
