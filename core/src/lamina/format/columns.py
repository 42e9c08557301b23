"""Column values <-> bytes, and the multi-column frame stored per block in a data file.

A data file holds one frame per block (or per granule, see block_index). A frame is the encoded
columns the layout puts in that file, each prefixed by its length, compressed as one unit and
checksummed as one unit: fewer, larger frames are what keeps per-block cost low in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lamina.format.encoding import (
    DecodeError,
    decode_bytes_list,
    decode_dict_codes,
    decode_float64s,
    decode_int64s,
    encode_bytes_list,
    encode_dict_codes,
    encode_float64s,
    encode_int64s,
    get_uvarint,
    put_uvarint,
)
from lamina.format.rows import object_array
from lamina.schema import ColumnKind

_STR_PLAIN = 0
_STR_DICT = 1


def encode_column(kind: ColumnKind, values: np.ndarray) -> bytes:
    if kind is ColumnKind.INT64:
        return encode_int64s(values)
    if kind is ColumnKind.FLOAT64:
        return encode_float64s(values)
    if kind is ColumnKind.BYTES:
        return encode_bytes_list(values)
    if kind is ColumnKind.STRING:
        return _encode_strings(values)
    raise ValueError(f"column kind {kind} is not stored in data files")


def decode_column(kind: ColumnKind, data: bytes | memoryview, count: int) -> np.ndarray:
    if kind is ColumnKind.INT64:
        return decode_int64s(data, count)
    if kind is ColumnKind.FLOAT64:
        return decode_float64s(data, count)
    if kind is ColumnKind.BYTES:
        return object_array(decode_bytes_list(data, count))
    if kind is ColumnKind.STRING:
        return _decode_strings(data, count)
    raise DecodeError(f"column kind {kind} is not stored in data files")


def _encode_strings(values: np.ndarray) -> bytes:
    index: dict[str, int] = {}
    codes = [index.setdefault(v, len(index)) for v in values]
    if len(index) * 2 <= len(values):
        return (
            bytes([_STR_DICT])
            + put_uvarint(len(index))
            + _with_len(encode_bytes_list([s.encode() for s in index]))
            + encode_dict_codes(np.asarray(codes, dtype=np.int64), len(index))
        )
    return bytes([_STR_PLAIN]) + encode_bytes_list([s.encode() for s in values])


def _decode_strings(data: bytes | memoryview, count: int) -> np.ndarray:
    data = memoryview(data)
    if not data:
        raise DecodeError("empty string column")
    mode = data[0]
    try:
        if mode == _STR_PLAIN:
            return object_array([b.decode() for b in decode_bytes_list(data[1:], count)])
        if mode == _STR_DICT:
            n, pos = get_uvarint(data, 1)
            if n > count:
                raise DecodeError(f"string dictionary of {n} entries for {count} values")
            blen, pos = get_uvarint(data, pos)
            words = object_array([b.decode() for b in decode_bytes_list(data[pos : pos + blen], n)])
            codes = decode_dict_codes(data[pos + blen :], count, n)
            return words[codes] if count else object_array([])
    except UnicodeDecodeError as e:
        raise DecodeError(f"string column is not UTF-8: {e}") from None
    raise DecodeError(f"unknown string column mode {mode}")


def _with_len(b: bytes) -> bytes:
    return put_uvarint(len(b)) + b


def encode_frame(encoded_columns: Sequence[bytes]) -> bytes:
    """Concatenate encoded columns, each length-prefixed."""
    out = bytearray()
    for b in encoded_columns:
        out += put_uvarint(len(b))
        out += b
    return bytes(out)


def split_frame(data: bytes | memoryview, ncols: int) -> list[memoryview]:
    """Inverse of encode_frame; DecodeError unless exactly `ncols` columns fill the frame."""
    view = memoryview(data)
    out = []
    pos = 0
    for _ in range(ncols):
        n, pos = get_uvarint(view, pos)
        if pos + n > len(view):
            raise DecodeError(f"column of {n} bytes overruns frame of {len(view)} at {pos}")
        out.append(view[pos : pos + n])
        pos += n
    if pos != len(view):
        raise DecodeError(f"{len(view) - pos} trailing bytes after {ncols} columns")
    return out
