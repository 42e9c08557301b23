"""Column encodings for one block: varints, int64 / float64 / bytes lists, dictionary codes.

These run once per block per column on the ingest path and once per block on every read. A
Python loop costs ~250 ns per item and a numpy call ~1 µs whatever its size, so long lists are
handled by a handful of whole-array numpy operations and never a per-value loop, while lists of at
most SMALL_LIST values (a 10-span trace) take a plain-Python path that writes identical bytes.

Decoders trust nothing. The bytes come from disk, and a checksum only proves they are the bytes
that were written, not that the writer (or the metadata giving `count`) was right. So every
decoder validates kinds, widths and exact lengths *before* allocating and raises `DecodeError`
(never IndexError/struct.error, never a silently wrong array). Callers attach part/file/offset and
turn it into `CorruptPartError`.

Byte formats (all integers little-endian):

- uvarint: LEB128, 1-10 bytes, canonical (a multi-byte varint never ends in a 0x00 byte).
- int64 list: ``kind:u8 width:u8 header:i64*h packed:i{width*8}*m``
    CONST          h=1 [value]          m=0,       width=0
    DELTA_CONST    h=2 [first, step]    m=0,       width=0
    DELTA          h=1 [first]          m=count-1, width in {1,2,4,8}: consecutive differences
    DELTA_OF_DELTA h=2 [first, delta0]  m=count-2, width in {1,2,4,8}: second differences
    RAW            h=0                  m=count,   width in {1,2,4,8}: the values
  (an empty list is ``04 01``; counts are never stored, the caller passes them in).
- float64 list: ``0x00 f64*count`` (RAW) or ``0x01 e:u8 <int64 list of mantissas>`` (DECIMAL:
  value == float64(m) / 10.0**e, bit-exactly).
- bytes list: ``uvarint(len(L)) L payload`` where L is the int64 list of item lengths.
- dictionary codes: ``u8*count`` if dict_size <= 256, ``u16*count`` if <= 65536, else ``u32*count``.
"""

from __future__ import annotations

import itertools
import math
import operator
import struct
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from lamina.errors import LaminaError

Buffer = bytes | bytearray | memoryview

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
UINT64_MAX: Final = (1 << 64) - 1

# A CONST or DELTA_CONST int64 list is 10-18 bytes whatever `count` is, so a damaged count in the
# metadata could otherwise make the decoder allocate terabytes. Every other kind is bounded by the
# bytes actually present. Callers with legitimately larger columns pass `max_count`.
DEFAULT_MAX_COUNT: Final = 1 << 26

KIND_CONST: Final = 0
KIND_DELTA_CONST: Final = 1
KIND_DELTA: Final = 2
KIND_DELTA_OF_DELTA: Final = 3
KIND_RAW: Final = 4

FLOAT_RAW: Final = 0
FLOAT_DECIMAL: Final = 1
MAX_DECIMAL_EXPONENT: Final = 18

_KIND_NAMES: Final = ("CONST", "DELTA_CONST", "DELTA", "DELTA_OF_DELTA", "RAW")
# Packed kinds: (int64 header fields, offset) where packed values = count - offset >= 0.
_PACKED_LAYOUT: Final = {KIND_DELTA: (1, 1), KIND_DELTA_OF_DELTA: (2, 2), KIND_RAW: (0, 0)}
_LE_INT: Final = {1: np.dtype("<i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4"), 8: np.dtype("<i8")}
_HEAD0: Final = struct.Struct("<BB")
_HEAD1: Final = struct.Struct("<BBq")
_HEAD2: Final = struct.Struct("<BBqq")
_I64: Final = struct.Struct("<q")
_U8: Final = struct.Struct("<B")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_DECIMAL_SCALES: Final = tuple(10.0**e for e in range(MAX_DECIMAL_EXPONENT + 1))


class DecodeError(LaminaError, ValueError):
    """Bytes that do not decode: wrong kind, width, length, value range or a truncated record.

    Raised by every decoder in `lamina.format`; it is a `ValueError` so code that only knows the
    standard library still catches it, and a `LaminaError` like everything Lamina raises on purpose.
    """


# --------------------------------------------------------------------------------------- varints


def put_uvarint(n: int) -> bytes:
    """LEB128 encoding of an unsigned 64-bit integer (1-10 bytes).

    Varints are for small metadata numbers (lengths, counts) where most values fit one byte; the
    column data itself uses fixed widths because numpy can pack those without a Python loop.
    """
    if n < 0 or n > UINT64_MAX:
        raise ValueError(f"uvarint out of range: {n}")
    if n < 0x80:
        return _U8.pack(n)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def get_uvarint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Decode a uvarint at `pos`; returns (value, position after it).

    Rejects truncation, encodings longer than 10 bytes, values above 2**64-1 and non-canonical
    encodings (a redundant final 0x00 group): with a single valid spelling per value, re-encoding
    a record reproduces its bytes, which is what checksums and byte-for-byte comparisons assume.
    """
    end = len(buf)
    if pos < 0 or pos >= end:
        raise DecodeError(f"uvarint at offset {pos}: no bytes left (buffer is {end} bytes)")
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    i = pos + 1
    while True:
        if i >= end:
            raise DecodeError(f"uvarint at offset {pos}: truncated after {i - pos} bytes")
        b = buf[i]
        i += 1
        if shift == 63:
            if b > 1:
                raise DecodeError(f"uvarint at offset {pos}: value exceeds 64 bits")
            if b == 0:
                raise DecodeError(f"uvarint at offset {pos}: non-canonical encoding")
            return result | (b << 63), i
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0:
                raise DecodeError(f"uvarint at offset {pos}: non-canonical encoding")
            return result, i
        shift += 7


class Cursor:
    """Sequential reader over a binary record that raises DecodeError on any overrun.

    Higher layers parse metadata records with it so that a truncated or garbled record surfaces as
    one readable DecodeError naming `what` and the offset, instead of a struct.error or IndexError
    from deep inside the parser. `take` returns zero-copy memoryview slices.
    """

    __slots__ = ("_buf", "_end", "pos", "what")

    def __init__(self, buf: Buffer, pos: int = 0, what: str = "record") -> None:
        self._buf = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
        self._end = len(self._buf)
        if pos < 0 or pos > self._end:
            raise DecodeError(f"{what}: start offset {pos} outside buffer of {self._end} bytes")
        self.pos = pos
        self.what = what

    @property
    def remaining(self) -> int:
        """Bytes left after the current position."""
        return self._end - self.pos

    def _need(self, n: int) -> int:
        pos = self.pos
        if n < 0 or n > self._end - pos:
            raise DecodeError(f"{self.what}: need {n} bytes at offset {pos}, only {self._end - pos} left")
        self.pos = pos + n
        return pos

    def u8(self) -> int:
        """One unsigned byte."""
        return int(self._buf[self._need(1)])

    def u16(self) -> int:
        """Little-endian unsigned 16-bit integer."""
        return int(_U16.unpack_from(self._buf, self._need(2))[0])

    def u32(self) -> int:
        """Little-endian unsigned 32-bit integer."""
        return int(_U32.unpack_from(self._buf, self._need(4))[0])

    def u64(self) -> int:
        """Little-endian unsigned 64-bit integer."""
        return int(_U64.unpack_from(self._buf, self._need(8))[0])

    def i64(self) -> int:
        """Little-endian signed 64-bit integer."""
        return int(_I64.unpack_from(self._buf, self._need(8))[0])

    def uvarint(self) -> int:
        """A canonical LEB128 uvarint (see `get_uvarint`)."""
        try:
            value, self.pos = get_uvarint(self._buf, self.pos)
        except DecodeError as e:
            raise DecodeError(f"{self.what}: {e}") from None
        return value

    def take(self, n: int) -> memoryview:
        """The next `n` bytes as a zero-copy memoryview."""
        start = self._need(n)
        return self._buf[start : start + n]

    def expect_end(self) -> None:
        """Fail if bytes are left over: trailing garbage means the record is not what we think."""
        if self.pos != self._end:
            raise DecodeError(
                f"{self.what}: {self._end - self.pos} unexpected trailing bytes at offset {self.pos}"
            )


# ------------------------------------------------------------------------------------ int64 lists


def _signed_width(lo: int, hi: int) -> int:
    """Smallest of 1/2/4/8 bytes whose signed range holds [lo, hi]."""
    if lo >= -0x80 and hi <= 0x7F:
        return 1
    if lo >= -0x8000 and hi <= 0x7FFF:
        return 2
    if lo >= -0x8000_0000 and hi <= 0x7FFF_FFFF:
        return 4
    return 8


def _as_int64(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """`values` as a 1-D int64 array, refusing anything that would change a value on the way."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.int64:
        return arr
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind in "iub":
        if arr.dtype == np.uint64 and int(arr.max()) > INT64_MAX:
            raise ValueError("uint64 value does not fit in int64")
        return arr.astype(np.int64)
    raise TypeError(f"expected an integer array, got dtype {arr.dtype}")


def _diff_fits(x: npt.NDArray[np.int64], d: npt.NDArray[np.int64]) -> bool:
    """True when no wrapped difference `d = x[1:] - x[:-1]` overflowed int64.

    Subtraction r = a - b overflows exactly when a and b have different signs and r's sign differs
    from a's, i.e. ((a ^ b) & (a ^ r)) < 0. Only called when the cheap range test is inconclusive.
    """
    a, b = x[1:], x[:-1]
    return not bool(np.any(((a ^ b) & (a ^ d)) < 0))


def _wrapping_diff(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Consecutive differences modulo 2**64 (uint64 arithmetic, so wrapping is well defined)."""
    u = x.view(np.uint64)
    return (u[1:] - u[:-1]).view(np.int64)


_STRUCT_CODE: Final = {1: "b", 2: "h", 4: "i", 8: "q"}
# Up to this many values the int64 codec works on Python lists: a numpy call costs ~1 µs whatever
# its size, and a 10-value block would pay for a dozen of them (measured: 12 µs vs 4 µs to encode
# 10 timestamps). Both paths produce identical bytes (tested).
SMALL_LIST: Final = 32


def encode_int64s(values: npt.ArrayLike) -> bytes:
    """Encode an int64 list as the smallest of CONST/DELTA_CONST/DELTA/DELTA_OF_DELTA/RAW.

    Timestamps are near-arithmetic (DELTA_OF_DELTA), IDs and counters are sorted (DELTA), lengths
    and small ints are RAW at a narrow width, and a column of one value is CONST. Trying them costs
    a few vectorized passes (a delta pass is skipped when it cannot beat the best so far); the
    choice is stored, so the decoder needs no heuristics. Ties go to the kind that is cheaper to
    decode. A difference that does not fit in int64 (values spanning more than 2**63) rules out the
    delta kinds, so decoding never relies on wrap-around.
    """
    v = _as_int64(values)
    n = int(v.size)
    if n == 0:
        return _HEAD0.pack(KIND_RAW, 1)
    if n <= SMALL_LIST:
        return _encode_int64s_small(v.tolist())
    return _encode_int64s_vector(v)


def _encode_int64s_small(vals: list[int]) -> bytes:
    """`encode_int64s` for short lists, on Python ints (exact, so overflow is a range check)."""
    n = len(vals)
    lo, hi = min(vals), max(vals)
    raw_w = _signed_width(lo, hi)
    # (encoded size, decode-cost rank, kind, width, packed values): min() picks the smallest,
    # then the cheapest to decode; the same order as the vectorized path.
    best: tuple[int, int, int, int, list[int]] = (2 + n * raw_w, 2, KIND_RAW, raw_w, vals)
    if lo == hi:
        best = min(best, (10, 0, KIND_CONST, 0, []))
    d: list[int] = []
    if n >= 2 and best[0] > 10 + (n - 1):
        d = [y - x for x, y in itertools.pairwise(vals)]
        dlo, dhi = min(d), max(d)
        if dlo >= INT64_MIN and dhi <= INT64_MAX:
            if dlo == dhi:
                best = min(best, (18, 1, KIND_DELTA_CONST, 0, []))
            d_w = _signed_width(dlo, dhi)
            best = min(best, (10 + (n - 1) * d_w, 3, KIND_DELTA, d_w, d))
            if n >= 3 and best[0] > 18 + (n - 2):
                dd = [y - x for x, y in itertools.pairwise(d)]
                ddlo, ddhi = min(dd), max(dd)
                if ddlo >= INT64_MIN and ddhi <= INT64_MAX:
                    dd_w = _signed_width(ddlo, ddhi)
                    best = min(best, (18 + (n - 2) * dd_w, 4, KIND_DELTA_OF_DELTA, dd_w, dd))
    _, _, kind, width, packed = best
    code = f"{len(packed)}{_STRUCT_CODE[width]}" if packed else ""
    if kind == KIND_RAW:
        return struct.pack("<BB" + code, kind, width, *packed)
    if kind == KIND_CONST:
        return _HEAD1.pack(KIND_CONST, 0, lo)
    if kind == KIND_DELTA_CONST:
        return _HEAD2.pack(KIND_DELTA_CONST, 0, vals[0], d[0])
    if kind == KIND_DELTA:
        return struct.pack("<BBq" + code, kind, width, vals[0], *packed)
    return struct.pack("<BBqq" + code, kind, width, vals[0], d[0], *packed)


def _encode_int64s_vector(v: npt.NDArray[np.int64]) -> bytes:
    """`encode_int64s` for longer lists: every pass is one numpy operation."""
    n = int(v.size)
    lo, hi = int(v.min()), int(v.max())
    raw_w = _signed_width(lo, hi)
    # (encoded size, decode-cost rank, kind, width): min() picks smallest, then cheapest.
    cands = [(2 + n * raw_w, 2, KIND_RAW, raw_w)]
    if lo == hi:
        cands.append((10, 0, KIND_CONST, 0))
    d = dd = np.empty(0, dtype=np.int64)
    if n >= 2 and min(cands)[0] > 10 + (n - 1):
        d = _wrapping_diff(v)
        if hi - lo <= INT64_MAX or _diff_fits(v, d):
            dlo, dhi = int(d.min()), int(d.max())
            if dlo == dhi:
                cands.append((18, 1, KIND_DELTA_CONST, 0))
            d_w = _signed_width(dlo, dhi)
            cands.append((10 + (n - 1) * d_w, 3, KIND_DELTA, d_w))
            if n >= 3 and min(cands)[0] > 18 + (n - 2):
                dd = _wrapping_diff(d)
                if dhi - dlo <= INT64_MAX or _diff_fits(d, dd):
                    dd_w = _signed_width(int(dd.min()), int(dd.max()))
                    cands.append((18 + (n - 2) * dd_w, 4, KIND_DELTA_OF_DELTA, dd_w))
    _, _, kind, width = min(cands)
    if kind == KIND_RAW:
        return _HEAD0.pack(KIND_RAW, width) + v.astype(_LE_INT[width]).tobytes()
    if kind == KIND_CONST:
        return _HEAD1.pack(KIND_CONST, 0, lo)
    if kind == KIND_DELTA_CONST:
        return _HEAD2.pack(KIND_DELTA_CONST, 0, int(v[0]), int(d[0]))
    if kind == KIND_DELTA:
        return _HEAD1.pack(KIND_DELTA, width, int(v[0])) + d.astype(_LE_INT[width]).tobytes()
    head = _HEAD2.pack(KIND_DELTA_OF_DELTA, width, int(v[0]), int(d[0]))
    return head + dd.astype(_LE_INT[width]).tobytes()


def _check_count(count: int, what: str) -> int:
    """`count` as a Python int (numpy integers accepted), or DecodeError if it is not a count."""
    try:
        n = operator.index(count)
    except TypeError:
        raise DecodeError(f"{what}: count {count!r} is not an integer") from None
    if n < 0 or isinstance(count, bool):
        raise DecodeError(f"{what}: invalid count {count!r}")
    return n


def _cumsum_checked(out: npt.NDArray[np.int64], max_abs_step: int, what: str) -> None:
    """Turn [first, step1, step2, ...] into its running sums in place; DecodeError on overflow.

    Our encoder only emits steps whose running sums are the original int64 values, so a sum that
    leaves int64 means the bytes were not written by it. Summing runs in uint64 (wrap-around is
    defined there, unlike signed overflow), and the per-element overflow test only runs when
    |first| + len * max_abs_step could leave int64, which narrow widths almost never allow.
    """
    u = out.view(np.uint64)
    if abs(int(out[0])) + (out.size - 1) * max_abs_step <= INT64_MAX:
        np.add.accumulate(u, out=u)
        return
    steps = out[1:].copy()
    np.add.accumulate(u, out=u)
    prev, cur = out[:-1], out[1:]
    # cur = prev + step overflowed iff prev and step share a sign that cur does not have.
    if bool(np.any(((prev ^ cur) & (steps ^ cur)) < 0)):
        raise DecodeError(f"{what}: decoded values overflow int64")


def _decode_deltas_small(data: Buffer, kind: int, width: int, m: int) -> npt.NDArray[np.int64]:
    """DELTA / DELTA_OF_DELTA for short lists on Python ints; same results and errors as numpy."""
    first = _I64.unpack_from(data, 2)[0]
    n_head = 1 if kind == KIND_DELTA else 2
    steps = struct.unpack_from(f"<{m}{_STRUCT_CODE[width]}", data, 2 + 8 * n_head)
    if kind == KIND_DELTA_OF_DELTA:
        deltas = list(itertools.accumulate(steps, initial=_I64.unpack_from(data, 10)[0]))
        if min(deltas) < INT64_MIN or max(deltas) > INT64_MAX:
            raise DecodeError("int64 list: DELTA_OF_DELTA deltas: decoded values overflow int64")
        what = "int64 list: DELTA_OF_DELTA"
    else:
        deltas = list(steps)
        what = "int64 list: DELTA"
    vals = list(itertools.accumulate(deltas, initial=first))
    if min(vals) < INT64_MIN or max(vals) > INT64_MAX:
        raise DecodeError(f"{what}: decoded values overflow int64")
    return np.array(vals, dtype=np.int64)


def decode_int64s(data: Buffer, count: int, *, max_count: int = DEFAULT_MAX_COUNT) -> npt.NDArray[np.int64]:
    """Decode `count` int64 values written by `encode_int64s`; returns a new writable array.

    The kind, the width and the exact byte length implied by (kind, width, count) are checked
    before anything is allocated; `max_count` bounds the kinds whose size does not grow with count.
    """
    count = _check_count(count, "int64 list")
    n_bytes = len(data)
    if n_bytes < 2:
        raise DecodeError(f"int64 list: {n_bytes} bytes, too short for the 2-byte header")
    kind, width = data[0], data[1]
    if kind in (KIND_CONST, KIND_DELTA_CONST):
        name = _KIND_NAMES[kind]
        if width != 0:
            raise DecodeError(f"int64 list: {name} with nonzero width byte {width}")
        want = 10 if kind == KIND_CONST else 18
        if n_bytes != want:
            raise DecodeError(f"int64 list: {name} must be {want} bytes, got {n_bytes}")
        if count > max_count:
            raise DecodeError(f"int64 list: count {count} exceeds the limit {max_count}")
        first = _I64.unpack_from(data, 2)[0]
        if kind == KIND_CONST:
            return np.full(count, first, dtype=np.int64)
        step = _I64.unpack_from(data, 10)[0]
        # Linear, so the last value bounds them all; then uint64 math gives the exact result.
        if count and not INT64_MIN <= first + (count - 1) * step <= INT64_MAX:
            raise DecodeError(f"int64 list: DELTA_CONST overflows int64 at count {count}")
        u = np.arange(count, dtype=np.uint64)
        u *= np.uint64(step & UINT64_MAX)
        u += np.uint64(first & UINT64_MAX)
        return u.view(np.int64)
    layout = _PACKED_LAYOUT.get(kind)
    if layout is None:
        raise DecodeError(f"int64 list: unknown kind {kind}")
    name = _KIND_NAMES[kind]
    dtype = _LE_INT.get(width)
    if dtype is None:
        raise DecodeError(f"int64 list: {name} with invalid width {width}")
    n_head, offset = layout
    if count < offset:
        raise DecodeError(f"int64 list: {name} cannot encode {count} values")
    m = count - offset
    want = 2 + 8 * n_head + m * width
    if n_bytes != want:
        raise DecodeError(
            f"int64 list: {name} width {width} with {count} values must be {want} bytes, got {n_bytes}"
        )
    if kind != KIND_RAW and count <= SMALL_LIST:
        return _decode_deltas_small(data, kind, width, m)
    out = np.empty(count, dtype=np.int64)
    out[n_head:] = np.frombuffer(data, dtype=dtype, count=m, offset=2 + 8 * n_head)
    if kind == KIND_RAW:
        return out
    out[0] = _I64.unpack_from(data, 2)[0]
    max_step = 1 << (8 * width - 1)
    if kind == KIND_DELTA:
        _cumsum_checked(out, max_step, "int64 list: DELTA")
        return out
    delta0 = _I64.unpack_from(data, 10)[0]
    out[1] = delta0
    _cumsum_checked(out[1:], max_step, "int64 list: DELTA_OF_DELTA deltas")
    _cumsum_checked(out, abs(delta0) + m * max_step, "int64 list: DELTA_OF_DELTA")
    return out


# ---------------------------------------------------------------------------------- float64 lists


# Mantissas must fit int64 (2**63 ~ 9.223e18); floats this large are all integers, so comparing
# before or after rounding is the same test on both paths.
_MANTISSA_LIMIT: Final = 9.2e18


def _decimal_exponent(x: float, start: int = 0) -> int | None:
    """Smallest e >= start with float(round(x * 10**e)) / 10**e == x bit-exactly, else None.

    Python's round() and np.rint both round half to even, and int->float conversion and the
    division are correctly rounded on both sides, so this agrees exactly with the numpy check.
    None also when the mantissa would not fit int64 (that only gets worse as e grows).
    """
    for e in range(start, MAX_DECIMAL_EXPONENT + 1):
        scale = _DECIMAL_SCALES[e]
        y = x * scale
        if abs(y) >= _MANTISSA_LIMIT:
            return None
        if float(round(y)) / scale == x:
            return e
    return None


def _find_decimal_small(vals: list[float]) -> tuple[int, list[int]] | None:
    """(e, mantissas) for a short list of finite floats without -0.0, on Python floats."""
    e: int | None = 0
    while e is not None:
        scale = _DECIMAL_SCALES[e]
        for x in vals:
            y = x * scale
            if abs(y) >= _MANTISSA_LIMIT:
                return None  # and for every larger e too
            if float(round(y)) / scale != x:
                # Every exponent below x's own smallest one fails for x too: jump there.
                e = _decimal_exponent(x, e + 1)
                break
        else:
            return e, [round(x * scale) for x in vals]
    return None


def _find_decimal_vector(v: npt.NDArray[np.float64]) -> tuple[int, npt.NDArray[np.int64]] | None:
    """(e, mantissas) for a long array of finite floats without -0.0, vectorized per exponent."""
    start: int | None = 0
    n = v.size
    for i in (0, n // 2, n - 1):  # cheap scalar lower bound on e, usually the answer
        start = _decimal_exponent(float(v[i]), start)
        if start is None:
            return None
    bits = v.view(np.uint64)
    for e in range(start, MAX_DECIMAL_EXPONENT + 1):
        scale = _DECIMAL_SCALES[e]
        scaled = np.rint(v * scale)
        if float(np.abs(scaled).max()) >= _MANTISSA_LIMIT:
            return None
        m = scaled.astype(np.int64)
        back = m.astype(np.float64)
        back /= scale
        if np.array_equal(back.view(np.uint64), bits):
            return e, m
    return None


def encode_float64s(values: npt.ArrayLike) -> bytes:
    """Encode floats as decimal mantissas (int64 list) when that is exact and smaller, else raw.

    Observability floats are mostly short decimals (0.25, 12.5, 99.9): as m / 10**e with the
    smallest e in [0, 18] the mantissas compress through the int64 encodings. The round trip is
    verified for every value; NaN, inf and -0.0 (which compares equal to 0.0 but is another bit
    pattern) keep the array RAW, so decoding is always bit-exact and the decoder never guesses.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"expected a float array, got dtype {arr.dtype}")
    v = arr.astype(np.float64, copy=False)
    n = int(v.size)
    raw = _U8.pack(FLOAT_RAW) + v.astype("<f8", copy=False).tobytes()
    if n == 0:
        return raw
    if n <= SMALL_LIST:
        vals = v.tolist()
        if not all(map(math.isfinite, vals)) or any(x == 0.0 and math.copysign(1.0, x) < 0 for x in vals):
            return raw
        found: tuple[int, list[int] | npt.NDArray[np.int64]] | None = _find_decimal_small(vals)
    else:
        if not bool(np.isfinite(v).all()) or bool(np.any(np.signbit(v) & (v == 0.0))):
            return raw
        found = _find_decimal_vector(v)
    if found is None:
        return raw
    e, mantissas = found
    enc = _HEAD0.pack(FLOAT_DECIMAL, e) + encode_int64s(np.asarray(mantissas, dtype=np.int64))
    return enc if len(enc) < len(raw) else raw


def decode_float64s(
    data: Buffer, count: int, *, max_count: int = DEFAULT_MAX_COUNT
) -> npt.NDArray[np.float64]:
    """Decode `count` floats written by `encode_float64s`; returns a new writable array."""
    count = _check_count(count, "float64 list")
    if len(data) < 1:
        raise DecodeError("float64 list: empty input, missing the kind byte")
    kind = data[0]
    if kind == FLOAT_RAW:
        want = 1 + 8 * count
        if len(data) != want:
            raise DecodeError(f"float64 list: RAW with {count} values must be {want} bytes, got {len(data)}")
        return np.frombuffer(data, dtype="<f8", count=count, offset=1).astype(np.float64)
    if kind != FLOAT_DECIMAL:
        raise DecodeError(f"float64 list: unknown kind {kind}")
    if len(data) < 2:
        raise DecodeError("float64 list: DECIMAL without its exponent byte")
    e = data[1]
    if e > MAX_DECIMAL_EXPONENT:
        raise DecodeError(f"float64 list: decimal exponent {e} > {MAX_DECIMAL_EXPONENT}")
    mv = memoryview(data)[2:]
    try:
        m = decode_int64s(mv, count, max_count=max_count)
    except DecodeError as exc:
        raise DecodeError(f"float64 list: mantissas: {exc}") from None
    out = m.astype(np.float64)
    out /= _DECIMAL_SCALES[e]
    return out


# ------------------------------------------------------------------------------------ bytes lists


def encode_bytes_list(items: Sequence[bytes]) -> bytes:
    """Encode byte strings as their lengths (an int64 list) followed by the concatenation.

    Lengths of similar items are close, so the int64 encodings pack them into 1-2 bytes each; the
    payload is left contiguous so the block compressor sees one run of similar text.
    """
    n = len(items)
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
    enc = encode_int64s(lengths)
    return b"".join((put_uvarint(len(enc)), enc, *items))


def _bytes_list_parts(data: Buffer, count: int, max_count: int) -> tuple[memoryview, npt.NDArray[np.int64]]:
    """Split a bytes list into (payload view, decoded lengths); lengths not yet validated."""
    count = _check_count(count, "bytes list")
    mv = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    try:
        enc_len, pos = get_uvarint(mv, 0)
    except DecodeError as exc:
        raise DecodeError(f"bytes list: length header: {exc}") from None
    if enc_len > len(mv) - pos:
        raise DecodeError(f"bytes list: lengths block of {enc_len} bytes overruns input of {len(mv)} bytes")
    try:
        lengths = decode_int64s(mv[pos : pos + enc_len], count, max_count=max_count)
    except DecodeError as exc:
        raise DecodeError(f"bytes list: lengths: {exc}") from None
    return mv[pos + enc_len :], lengths


def decode_bytes_offsets(
    data: Buffer, count: int, *, max_count: int = DEFAULT_MAX_COUNT
) -> tuple[memoryview, npt.NDArray[np.int64]]:
    """(payload, offsets) of a bytes list: item i is payload[offsets[i]:offsets[i+1]].

    `offsets` has count+1 entries from 0 to len(payload). Building `count` bytes objects costs
    ~250 ns each (allocation, not copying), so a reader that needs a few items, or can work on
    offsets with numpy, should use this and skip `decode_bytes_list`. The payload is a zero-copy
    view of `data`. Lengths must be non-negative and add up to the payload size exactly.
    """
    payload, lengths = _bytes_list_parts(data, count, max_count)
    count, total = lengths.size, len(payload)
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[0] = 0
    if count == 0:
        if total:
            raise DecodeError(f"bytes list: {total} payload bytes but no items")
        return payload, offsets
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 0:
        raise DecodeError(f"bytes list: negative item length {lo}")
    if hi > total:
        raise DecodeError(f"bytes list: item length {hi} exceeds the payload of {total} bytes")
    offsets[1:] = lengths
    u = offsets.view(np.uint64)
    np.add.accumulate(u, out=u)
    # Each term is <= total, so the sums can only leave int64 for absurd counts; check then
    # (the first wrapped partial sum is negative and stays in `offsets`).
    if count * hi > INT64_MAX and int(offsets.min()) < 0:
        raise DecodeError("bytes list: item lengths overflow")
    if int(offsets[-1]) != total:
        raise DecodeError(f"bytes list: item lengths add up to {int(offsets[-1])}, payload is {total} bytes")
    return payload, offsets


def decode_bytes_list(data: Buffer, count: int, *, max_count: int = DEFAULT_MAX_COUNT) -> list[bytes]:
    """Decode `count` byte strings written by `encode_bytes_list`.

    Offsets come from one numpy cumsum (`decode_bytes_offsets`), so the only per-item Python work
    is slicing out the results, straight from `data` when it is `bytes`.
    """
    if count <= SMALL_LIST:
        return _decode_bytes_list_small(data, count, max_count)
    payload, offsets = decode_bytes_offsets(data, count, max_count=max_count)
    if isinstance(data, bytes):
        src, base = data, len(data) - len(payload)
        if base:
            offsets += base
    else:
        src = bytes(payload)
    bounds = offsets.tolist()
    return [src[s:e] for s, e in itertools.pairwise(bounds)]


def _decode_bytes_list_small(data: Buffer, count: int, max_count: int) -> list[bytes]:
    """`decode_bytes_list` for a few items on Python ints (numpy calls cost more than the work)."""
    payload, lengths = _bytes_list_parts(data, count, max_count)
    lens = lengths.tolist()
    total = len(payload)
    if lens and min(lens) < 0:
        raise DecodeError(f"bytes list: negative item length {min(lens)}")
    if sum(lens) != total:
        raise DecodeError(f"bytes list: item lengths add up to {sum(lens)}, payload is {total} bytes")
    if isinstance(data, bytes):
        src, base = data, len(data) - total
    else:
        src, base = bytes(payload), 0
    bounds = list(itertools.accumulate(lens, initial=base))
    return [src[s:e] for s, e in itertools.pairwise(bounds)]


# ------------------------------------------------------------------------------- dictionary codes


def _code_dtype(dict_size: int) -> np.dtype[np.unsignedinteger]:
    if dict_size <= 0x100:
        return np.dtype("<u1")
    if dict_size <= 0x1_0000:
        return np.dtype("<u2")
    if dict_size <= 0x1_0000_0000:
        return np.dtype("<u4")
    raise ValueError(f"dictionary of {dict_size} entries is larger than 2**32")


def encode_dict_codes(codes: npt.ArrayLike, dict_size: int) -> bytes:
    """Store dictionary codes at the narrowest unsigned width the dictionary size allows.

    Tag columns have low cardinality; one byte per value (two above 256 values) beats any generic
    compressor on both size and speed, and the width follows from `dict_size`, so no header.
    """
    if dict_size < 0:
        raise ValueError(f"negative dictionary size {dict_size}")
    dtype = _code_dtype(dict_size)
    arr = np.asarray(codes)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    if arr.size:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"expected integer codes, got dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= dict_size:
            raise ValueError(f"dictionary code out of range [0, {dict_size}): {lo}..{hi}")
    return arr.astype(dtype, copy=False).tobytes()


def decode_dict_codes(data: Buffer, count: int, dict_size: int) -> npt.NDArray[np.unsignedinteger]:
    """Decode `count` codes; returns a new array of uint8/uint16/uint32 (by `dict_size`).

    Every code is checked against `dict_size`, so indexing the dictionary with the result can
    never raise IndexError or, worse, wrap around with a negative index.
    """
    count = _check_count(count, "dictionary codes")
    if not isinstance(dict_size, int) or dict_size < 0 or dict_size > 0x1_0000_0000:
        raise DecodeError(f"dictionary codes: invalid dictionary size {dict_size!r}")
    dtype = _code_dtype(dict_size)
    want = count * dtype.itemsize
    if len(data) != want:
        raise DecodeError(
            f"dictionary codes: {count} codes of {dtype.itemsize} bytes must be {want} bytes, got {len(data)}"
        )
    out = np.frombuffer(data, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
    if count and int(out.max()) >= dict_size:
        raise DecodeError(f"dictionary codes: code {int(out.max())} out of range for {dict_size} entries")
    return out
