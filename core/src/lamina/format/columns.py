"""Column values <-> bytes, and the multi-column frame stored per block in a data file.

A data file holds one frame per block (or per granule, see block_index). A frame is the encoded
columns the layout puts in that file, each prefixed by its length, compressed as one unit and
checksummed as one unit: fewer, larger frames are what keeps per-block cost low in Python.
"""

from __future__ import annotations

import struct
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
        items = _decode_bytes_small(data, count) if count <= _SMALL_BYTES else None
        return object_array(items if items is not None else decode_bytes_list(data, count))
    if kind is ColumnKind.STRING:
        return _decode_strings(data, count)
    raise DecodeError(f"column kind {kind} is not stored in data files")


# A block of a trace is ~10 rows: its bytes columns are decoded on every lookup and every scan hit.
_SMALL_BYTES = 32
_I64S = struct.Struct("<q")


def _decode_bytes_small(data: bytes | memoryview, count: int) -> list[bytes] | None:
    """`decode_bytes_list` for a short list whose lengths are CONST or RAW at width 1 or 2 (IDs and
    payloads), in plain Python. None for anything else, valid or not: the caller then runs the
    general decoder, which also produces the error for damaged input; this path only returns
    what that decoder would return."""
    n = len(data)
    if n < 3:
        return None
    enc_len = data[0]
    if enc_len >= 0x80 or 1 + enc_len > n:
        return None
    kind, width = data[1], data[2]
    start = 1 + enc_len
    total = n - start
    if kind == 0 and width == 0 and enc_len == 10:  # CONST length
        size = _I64S.unpack_from(data, 3)[0]
        if size < 0 or size * count != total:
            return None
        raw = bytes(data[start:]) if start else bytes(data)
        return [raw[k : k + size] for k in range(0, total, size)] if size else [b""] * count
    if kind == 4 and width in (1, 2) and enc_len == 2 + count * width:  # RAW lengths
        lens = struct.unpack_from(f"<{count}{'b' if width == 1 else 'h'}", data, 3)
        if (count and min(lens) < 0) or sum(lens) != total:
            return None
        raw = bytes(data[start:])
        out = []
        pos = 0
        for ln in lens:
            out.append(raw[pos : pos + ln])
            pos += ln
        return out
    return None


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


# ---------------------------------------------------------------------------------------------
# Many blocks at once (the writer's granule flush)
#
# Encoding block by block costs a dozen small numpy and Python calls per column per block, which
# dominated ingest (~40 us per 10-span block). The functions below encode the frames of every block
# of a granule from whole-granule columns with a handful of numpy passes plus one short Python
# step per block, and produce exactly the bytes `encode_frame([encode_column(...)])` produces for
# each block (same int64-list kind and width choices), so parts do not depend on the path taken.
# ---------------------------------------------------------------------------------------------

_UV1 = [bytes((i,)) for i in range(0x80)]
# Values above this are rare enough (a 2^61-wide int64 range) to take the exact per-block path.
_SAFE_SPAN = 1 << 61
_K_CONST, _K_DELTA_CONST, _K_DELTA, _K_DOD, _K_RAW = 0, 1, 2, 3, 4
_HEAD0 = struct.Struct("<BB")
_HEAD1 = struct.Struct("<BBq")
_HEAD2 = struct.Struct("<BBqq")
_WIDTH_DTYPE = {1: np.dtype("<i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4"), 8: np.dtype("<i8")}


def _uv(n: int) -> bytes:
    """put_uvarint for the lengths inside frames (mostly below 2^14)."""
    if n < 0x80:
        return _UV1[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    return put_uvarint(n)


def _widths(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Vectorised `_signed_width`: smallest of 1/2/4/8 bytes holding [lo, hi]."""
    w = np.full(lo.shape, 8, dtype=np.int64)
    w[(lo >= -0x8000_0000) & (hi <= 0x7FFF_FFFF)] = 4
    w[(lo >= -0x8000) & (hi <= 0x7FFF)] = 2
    w[(lo >= -0x80) & (hi <= 0x7F)] = 1
    return w


def _seg_reduce(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of arr[starts[k]:ends[k]] for non-empty ranges."""
    if not len(starts):
        e = np.empty(0, dtype=arr.dtype)
        return e, e
    ext = np.append(arr, arr[:1])  # reduceat needs every index < len
    idx = np.empty(2 * len(starts), dtype=np.int64)
    idx[0::2], idx[1::2] = starts, ends
    return np.minimum.reduceat(ext, idx)[0::2], np.maximum.reduceat(ext, idx)[0::2]


def _better(size_a: np.ndarray, rank_a: int, size_b: np.ndarray, rank_b: np.ndarray) -> np.ndarray:
    """Where candidate a beats b: smaller, or as small and cheaper to decode (lower rank)."""
    return (size_a < size_b) | ((size_a == size_b) & (rank_a < rank_b))


def encode_int64s_many(values: np.ndarray, counts: np.ndarray) -> list[bytes]:
    """`encode_int64s` of each consecutive segment of `values` (`counts` values each), in one
    vectorised pass; byte-identical to encoding the segments one by one."""
    v = np.asarray(values, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    ns = len(counts)
    if ns == 0:
        return []
    ends = np.cumsum(counts)
    starts = ends - counts
    if int(counts.min()) == 0 or int(v.max()) - int(v.min()) > _SAFE_SPAN:
        return [encode_int64s(v[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    lo, hi = _seg_reduce(v, starts, ends)
    raw_w = _widths(lo, hi)
    size = 2 + counts * raw_w
    rank = np.full(ns, 2, dtype=np.int64)
    kind = np.full(ns, _K_RAW, dtype=np.int64)
    width = raw_w.copy()
    m = (lo == hi) & _better(np.int64(10), 0, size, rank)
    size[m], rank[m], kind[m], width[m] = 10, 0, _K_CONST, 0
    d = v[1:] - v[:-1]  # |d| <= 2^61: no overflow
    cd = (counts >= 2) & (size > 10 + (counts - 1))
    dlo = dhi = np.zeros(0, dtype=np.int64)
    if cd.any():
        sel = np.flatnonzero(cd)
        dlo, dhi = _seg_reduce(d, starts[sel], ends[sel] - 1)
        n_s = counts[sel]
        s_size, s_rank, s_kind, s_width = size[sel], rank[sel], kind[sel], width[sel]
        m = (dlo == dhi) & _better(np.int64(18), 1, s_size, s_rank)
        s_size[m], s_rank[m], s_kind[m], s_width[m] = 18, 1, _K_DELTA_CONST, 0
        d_w = _widths(dlo, dhi)
        d_size = 10 + (n_s - 1) * d_w
        m = _better(d_size, 3, s_size, s_rank)
        s_size[m], s_rank[m], s_kind[m], s_width[m] = d_size[m], 3, _K_DELTA, d_w[m]
        cdd = (n_s >= 3) & (s_size > 18 + (n_s - 2))
        if cdd.any():
            sel2 = np.flatnonzero(cdd)
            dd = d[1:] - d[:-1]  # |dd| <= 2^62
            a2 = starts[sel][sel2]
            ddlo, ddhi = _seg_reduce(dd, a2, a2 + n_s[sel2] - 2)
            dd_w = _widths(ddlo, ddhi)
            dd_size = 18 + (n_s[sel2] - 2) * dd_w
            m2 = _better(dd_size, 4, s_size[sel2], s_rank[sel2])
            t = sel2[m2]
            s_size[t], s_rank[t], s_kind[t], s_width[t] = dd_size[m2], 4, _K_DOD, dd_w[m2]
        size[sel], rank[sel], kind[sel], width[sel] = s_size, s_rank, s_kind, s_width
    # emit: packed bodies are byte slices of one whole-array cast per (source, width) used
    packed: dict[tuple[int, int], bytes] = {}

    def body(src: int, w: int) -> bytes:
        key = (src, w)
        b = packed.get(key)
        if b is None:
            arr = v if src == 0 else (d if src == 1 else d[1:] - d[:-1])
            b = packed[key] = arr.astype(_WIDTH_DTYPE[w]).tobytes()
        return b

    first = v[starts].tolist()
    d_first = np.append(d, 0)[starts].tolist() if len(v) else [0] * ns
    out = []
    for k, (kd, w, a, n, lo_k) in enumerate(
        zip(kind.tolist(), width.tolist(), starts.tolist(), counts.tolist(), lo.tolist(), strict=True)
    ):
        if kd == _K_RAW:
            out.append(_HEAD0.pack(_K_RAW, w) + body(0, w)[a * w : (a + n) * w])
        elif kd == _K_CONST:
            out.append(_HEAD1.pack(_K_CONST, 0, lo_k))
        elif kd == _K_DELTA_CONST:
            out.append(_HEAD2.pack(_K_DELTA_CONST, 0, first[k], d_first[k]))
        elif kd == _K_DELTA:
            out.append(_HEAD1.pack(_K_DELTA, w, first[k]) + body(1, w)[a * w : (a + n - 1) * w])
        else:
            head = _HEAD2.pack(_K_DOD, w, first[k], d_first[k])
            out.append(head + body(2, w)[a * w : (a + n - 2) * w])
    return out


def encode_frames_many(
    kinds: Sequence[ColumnKind], columns: Sequence[np.ndarray], counts: np.ndarray
) -> list[bytes]:
    """The frame of each consecutive block of rows (`counts` rows each): for block k,
    `encode_frame([encode_column(kind, col[block k]) for kind, col])`, byte for byte."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    a_l, b_l = starts.tolist(), ends.tolist()
    uv = _uv
    # per column, per block: the encoded column is head + buf[x:y] (buf None: head only)
    cols: list[tuple[list[bytes], bytes | None, list[int], list[int]]] = []
    for kind, col in zip(kinds, columns, strict=True):
        if kind is ColumnKind.BYTES:
            vals = col.tolist() if isinstance(col, np.ndarray) else list(col)
            lens = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
            offs = np.zeros(len(vals) + 1, dtype=np.int64)
            np.cumsum(lens, out=offs[1:])
            x_l, y_l = offs[starts].tolist(), offs[ends].tolist()
            heads = [uv(len(e)) + e for e in encode_int64s_many(lens, counts)]
            cols.append((heads, b"".join(vals), x_l, y_l))
        elif kind is ColumnKind.INT64:
            cols.append((encode_int64s_many(np.asarray(col), counts), None, a_l, a_l))
        else:
            heads = [encode_column(kind, col[a:b]) for a, b in zip(a_l, b_l, strict=True)]
            cols.append((heads, None, a_l, a_l))
    parts: list[list[bytes]] = []
    for heads, buf, x_l, y_l in cols:
        if buf is None:
            parts.append([uv(len(h)) + h for h in heads])
        else:
            # prefix + head, then the payload slice; two pieces per block
            parts.append([uv(len(h) + y - x) + h for h, x, y in zip(heads, x_l, y_l, strict=True)])
            parts.append([buf[x:y] for x, y in zip(x_l, y_l, strict=True)])
    join = b"".join
    return [join(p) for p in zip(*parts, strict=True)]
