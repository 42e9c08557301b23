"""Tag columns: per-part dictionaries of typed values, codes stored per granule.

Observability tags are mostly low-cardinality strings (service, operation, status). Each tag of a
part gets a dictionary in `<tag>.tm` and its per-row codes in `<tag>.t`, one checksummed chunk per
granule (measured: 5x smaller and ~10x faster than compressing raw strings per block, see
block-compression.md). The dictionary holds *typed* values, so a tag that is a string in one part
and an int in another merges without renaming tricks: both values keep their own type.

A tag with more distinct values than `MAX_DICT` is stored PLAIN: typed values per granule chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from lamina.format.encoding import (
    DecodeError,
    decode_bytes_list,
    decode_dict_codes,
    encode_bytes_list,
    encode_dict_codes,
    get_uvarint,
    put_uvarint,
)
from lamina.format.rows import object_array

MAX_DICT = 65_536

ABSENT, T_STR, T_INT, T_FLOAT, T_BYTES, T_BOOL = range(6)
TYPE_NAMES = {T_STR: "str", T_INT: "int", T_FLOAT: "float", T_BYTES: "bytes", T_BOOL: "bool"}
_TYPE_OF: dict[type, int] = {str: T_STR, int: T_INT, float: T_FLOAT, bytes: T_BYTES, bool: T_BOOL}
MODE_DICT, MODE_PLAIN = 1, 2

_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


def type_code(value: Any) -> int:
    if value is None:
        return ABSENT
    try:
        return _TYPE_OF[type(value)]
    except KeyError:
        raise TypeError(f"unsupported tag value type {type(value).__name__}") from None


def _payload(t: int, v: Any) -> bytes:
    if t == T_STR:
        return v.encode()
    if t == T_INT:
        return _I64.pack(v)
    if t == T_FLOAT:
        return _F64.pack(v)
    if t == T_BOOL:
        return b"\x01" if v else b"\x00"
    return v


def _value(t: int, b: bytes) -> Any:
    try:
        if t == T_STR:
            return b.decode()
        if t == T_INT:
            return _I64.unpack(b)[0]
        if t == T_FLOAT:
            return _F64.unpack(b)[0]
        if t == T_BOOL:
            if b not in (b"\x00", b"\x01"):
                raise DecodeError(f"bad bool tag value {b!r}")
            return b == b"\x01"
    except (UnicodeDecodeError, struct.error) as e:
        raise DecodeError(f"bad tag value of type {TYPE_NAMES.get(t, t)}: {e}") from None
    return b


def encode_values(values: Iterable[Any]) -> bytes:
    """Typed values (None allowed): n, a type byte per value, then the non-None payloads."""
    vals = list(values)
    types = bytes(type_code(v) for v in vals)
    payloads = [_payload(t, v) for t, v in zip(types, vals, strict=True) if t]
    body = encode_bytes_list(payloads)
    return put_uvarint(len(vals)) + types + put_uvarint(len(payloads)) + body


def decode_values(data: bytes | memoryview) -> np.ndarray:
    view = memoryview(data)
    n, pos = get_uvarint(view, 0)
    if pos + n > len(view):
        raise DecodeError(f"{n} value types overrun {len(view)} bytes")
    types = bytes(view[pos : pos + n])
    npay, pos = get_uvarint(view, pos + n)
    if npay != sum(1 for t in types if t):
        raise DecodeError(f"{npay} payloads for {n} typed values")
    if any(t > T_BOOL for t in types):
        raise DecodeError("unknown tag value type")
    payloads = decode_bytes_list(view[pos:], npay)
    it = iter(payloads)
    return object_array([_value(t, next(it)) if t else None for t in types])


class TagDict:
    """A growing dictionary of typed values; code 0 means absent, code i+1 is values[i]."""

    __slots__ = ("_by_type", "values")

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self.values: list[Any] = []
        self._by_type: dict[int, dict[Any, int]] = {}
        for v in values:
            self.add(v)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, v: Any) -> int:
        t = type_code(v)
        d = self._by_type.setdefault(t, {})
        # floats are keyed by bit pattern: -0.0 and 0.0 (equal in Python) stay distinct, and each
        # NaN payload finds itself again
        k = _F64.pack(v) if t == T_FLOAT else v
        code = d.get(k)
        if code is None:
            self.values.append(v)
            code = d[k] = len(self.values)
        return code

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Codes for a column of values; single-type columns skip the per-value type dispatch."""
        kinds = set(map(type, values))
        kinds.discard(type(None))
        add = self.add
        if len(kinds) == 1:
            t = _TYPE_OF.get(kinds.pop())
            if t is None:
                raise TypeError(f"unsupported tag value type in {values[:3]!r}")
            d = self._by_type.setdefault(t, {})
            if t == T_FLOAT:
                it = (0 if v is None else add(v) for v in values)
            else:
                it = (0 if v is None else (d.get(v) or add(v)) for v in values)
        else:
            it = (0 if v is None else add(v) for v in values)
        return np.fromiter(it, dtype=np.int64, count=len(values))

    def lookup(self) -> np.ndarray:
        """Object array indexed by code (index 0 = None)."""
        return object_array([None, *self.values])

    def type_name(self) -> str:
        names = {TYPE_NAMES[type_code(v)] for v in self.values}
        return names.pop() if len(names) == 1 else ("mixed" if names else "none")


def encode_tag_meta(mode: int, tdict: TagDict | None) -> bytes:
    if mode == MODE_DICT:
        if tdict is None:
            raise ValueError("DICT mode needs a dictionary")
        return bytes([MODE_DICT]) + encode_values(tdict.values)
    return bytes([MODE_PLAIN])


def decode_tag_meta(data: bytes | memoryview) -> tuple[int, TagDict | None]:
    view = memoryview(data)
    if not view:
        raise DecodeError("empty tag metadata")
    mode = view[0]
    if mode == MODE_PLAIN:
        if len(view) != 1:
            raise DecodeError("trailing bytes in PLAIN tag metadata")
        return mode, None
    if mode != MODE_DICT:
        raise DecodeError(f"unknown tag mode {mode}")
    values = decode_values(view[1:])
    if any(v is None for v in values):
        raise DecodeError("absent value inside a tag dictionary")
    return mode, TagDict(values)


def encode_chunk(mode: int, codes_or_values: np.ndarray, dict_size: int) -> bytes:
    if mode == MODE_DICT:
        return encode_dict_codes(codes_or_values, dict_size + 1)
    return encode_values(codes_or_values)


def decode_chunk(mode: int, data: bytes | memoryview, count: int, dict_size: int) -> np.ndarray:
    """DICT: codes (int array); PLAIN: values (object array)."""
    if mode == MODE_DICT:
        return decode_dict_codes(data, count, dict_size + 1)
    vals = decode_values(data)
    if len(vals) != count:
        raise DecodeError(f"tag chunk holds {len(vals)} values, index says {count}")
    return vals
