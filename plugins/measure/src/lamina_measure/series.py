"""Series IDs: a stable 64-bit hash of a point's entity values.

Stable means across processes, machines and releases (stored parts are keyed by it), so it is
xxh64 with seed 0 over an unambiguous byte encoding of the values, never Python's `hash()`.
Each value is encoded as a type byte, its length, then its bytes: ("ab", "c") and ("a", "bc")
differ, and so do 1 and "1".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xxhash

from lamina.batch import utf8_problem

#: Types an entity value may have (bool is refused: True and 1 would be ambiguous).
ENTITY_TYPES = (str, int, bytes)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _encode(value: Any) -> bytes:
    tp = type(value)
    if tp is str:
        b, code = value.encode(), b"s"
    elif tp is bytes:
        b, code = value, b"b"
    elif tp is int:
        b, code = value.to_bytes(8, "big", signed=True), b"i"
    else:
        raise TypeError(f"entity values must be str, int or bytes, got {tp.__name__}")
    return code + len(b).to_bytes(4, "big") + b


def series_id(values: Sequence[Any]) -> int:
    """The series ID (a signed int64) of one tuple of entity values, in entity order."""
    h = xxhash.xxh64_intdigest(b"".join(map(_encode, values)))
    return h - (1 << 64) if h > _INT64_MAX else h


def series_ids(columns: Sequence[Sequence[Any]]) -> np.ndarray:
    """Series IDs of many rows, given one column of values per entity tag. Each distinct tuple is
    hashed once (a metric batch repeats a few thousand series over and over)."""
    cache: dict[tuple[Any, ...], int] = {}
    out = []
    append = out.append
    for key in zip(*columns, strict=True):
        sid = cache.get(key)
        if sid is None:
            sid = cache[key] = series_id(key)
        append(sid)
    return np.asarray(out, dtype=np.int64) if out else np.empty(0, np.int64)


def entity_value_problem(value: Any) -> str | None:
    """Why `value` cannot be an entity value (None: it can): str (valid UTF-8, which the series
    hash encodes), int64 or bytes."""
    tp = type(value)
    if tp is bytes or (tp is int and _INT64_MIN <= value <= _INT64_MAX):
        return None
    if tp is str:
        problem = utf8_problem(value)
        return None if problem is None else f"entity value {value!r} {problem}"
    return f"entity values are str, int64 or bytes, got {value!r}"


def valid_entity_value(value: Any) -> bool:
    return entity_value_problem(value) is None
