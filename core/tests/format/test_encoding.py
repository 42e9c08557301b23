"""Column encodings: exact round trips, size choices, and strict rejection of malformed input."""

from __future__ import annotations

import contextlib
import itertools
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lamina.format import encoding as enc
from lamina.format.encoding import (
    SMALL_LIST,
    Cursor,
    DecodeError,
    decode_bytes_list,
    decode_bytes_offsets,
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

I64_MIN, I64_MAX = enc.INT64_MIN, enc.INT64_MAX
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

int64s = st.integers(I64_MIN, I64_MAX)
edgy_int64s = st.one_of(
    int64s,
    st.sampled_from([I64_MIN, I64_MIN + 1, -1, 0, 1, I64_MAX - 1, I64_MAX]),
    st.integers(-300, 300),
)


@st.composite
def int64_lists(draw: st.DrawFn) -> list[int]:
    """Random, constant, arithmetic, sorted and timestamp-like lists, short and long."""
    n = draw(st.integers(0, 3 * SMALL_LIST))
    shape = draw(st.sampled_from(["random", "const", "arith", "sorted", "timestamps", "extreme"]))
    if shape == "random":
        return draw(st.lists(edgy_int64s, min_size=n, max_size=n))
    first = draw(edgy_int64s)
    if shape == "const":
        return [first] * n
    if shape == "extreme":
        return draw(st.lists(st.sampled_from([I64_MIN, I64_MAX, 0, -1]), min_size=n, max_size=n))
    if shape == "arith":
        step = draw(st.integers(-(2**40), 2**40))
        steps = [step] * max(n - 1, 0)
    elif shape == "sorted":
        steps = draw(st.lists(st.integers(0, 2**20), min_size=max(n - 1, 0), max_size=n))
    else:
        base = draw(st.integers(1, 10**9))
        jit = draw(st.integers(0, 1000))
        steps = [base + draw(st.integers(-jit, jit)) for _ in range(max(n - 1, 0))]
    out = [first]
    for s in steps[: max(n - 1, 0)]:
        out.append(out[-1] + s)
    out = [x for x in out[:n] if I64_MIN <= x <= I64_MAX]  # drop what ran off the int64 range
    return out


def _roundtrip_int64(values: list[int] | np.ndarray) -> bytes:
    arr = np.asarray(values, dtype=np.int64)
    data = encode_int64s(arr)
    out = decode_int64s(data, arr.size)
    assert out.dtype == np.int64
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    return data


# ------------------------------------------------------------------------------------- uvarints


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**63, b"\x80" * 9 + b"\x01"),
        (2**64 - 1, b"\xff" * 9 + b"\x01"),
    ],
)
def test_uvarint_matches_leb128(value: int, encoded: bytes) -> None:
    assert put_uvarint(value) == encoded
    assert get_uvarint(encoded, 0) == (value, len(encoded))
    assert get_uvarint(b"xx" + encoded + b"yy", 2) == (value, 2 + len(encoded))


@PROPS
@given(st.integers(0, 2**64 - 1))
def test_uvarint_roundtrips_every_uint64(value: int) -> None:
    data = put_uvarint(value)
    assert 1 <= len(data) <= 10
    assert get_uvarint(data, 0) == (value, len(data))
    assert get_uvarint(memoryview(data), 0) == (value, len(data))


@pytest.mark.parametrize("value", [-1, 2**64])
def test_uvarint_encoder_rejects_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        put_uvarint(value)


@pytest.mark.parametrize(
    ("data", "pos", "message"),
    [
        (b"", 0, "no bytes left"),
        (b"\x01", 1, "no bytes left"),
        (b"\x01", -1, "no bytes left"),
        (b"\x80", 0, "truncated"),
        (b"\xff\xff", 0, "truncated"),
        (b"\xff" * 9 + b"\x02", 0, "exceeds 64 bits"),
        (b"\xff" * 10 + b"\x01", 0, "exceeds 64 bits"),
        (b"\x80\x00", 0, "non-canonical"),
        (b"\xff" * 9 + b"\x00", 0, "non-canonical"),
    ],
)
def test_uvarint_decoder_rejects_malformed(data: bytes, pos: int, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        get_uvarint(data, pos)


@PROPS
@given(st.binary(max_size=12), st.integers(0, 12))
def test_uvarint_garbage_raises_only_decode_error(data: bytes, pos: int) -> None:
    with contextlib.suppress(DecodeError):  # anything else is a bug
        get_uvarint(data, pos)


# -------------------------------------------------------------------------------------- cursor


def test_cursor_reads_fields_in_sequence() -> None:
    rec = (
        b"\x07"
        + struct.pack("<H", 513)
        + struct.pack("<I", 2**32 - 1)
        + struct.pack("<Q", 2**64 - 1)
        + struct.pack("<q", -5)
        + put_uvarint(300)
        + b"tail"
    )
    c = Cursor(rec, what="meta record")
    assert (c.u8(), c.u16(), c.u32(), c.u64(), c.i64(), c.uvarint()) == (
        7,
        513,
        2**32 - 1,
        2**64 - 1,
        -5,
        300,
    )
    assert c.remaining == 4
    tail = c.take(4)
    assert isinstance(tail, memoryview)
    assert bytes(tail) == b"tail"
    c.expect_end()


@pytest.mark.parametrize("method", ["u8", "u16", "u32", "u64", "i64", "uvarint"])
def test_cursor_overrun_raises_decode_error_naming_the_record(method: str) -> None:
    c = Cursor(b"", what="granule header")
    with pytest.raises(DecodeError, match="granule header"):
        getattr(c, method)()


def test_cursor_take_rejects_overrun_and_negative_lengths() -> None:
    c = Cursor(b"abc", pos=1)
    with pytest.raises(DecodeError, match="need 3 bytes at offset 1, only 2 left"):
        c.take(3)
    with pytest.raises(DecodeError):
        c.take(-1)
    assert c.pos == 1  # a failed read does not move the cursor


def test_cursor_expect_end_rejects_trailing_bytes() -> None:
    c = Cursor(bytearray(b"\x01\x02"))
    c.u8()
    with pytest.raises(DecodeError, match="1 unexpected trailing bytes"):
        c.expect_end()


def test_cursor_rejects_start_outside_buffer() -> None:
    with pytest.raises(DecodeError):
        Cursor(b"ab", pos=3)


# ------------------------------------------------------------------------------------ int64s


@PROPS
@given(int64_lists())
def test_int64_roundtrip_is_lossless(values: list[int]) -> None:
    _roundtrip_int64(values)


@PROPS
@given(int64_lists())
def test_int64_small_and_vector_paths_write_identical_bytes(values: list[int]) -> None:
    assume(values)
    arr = np.array(values, dtype=np.int64)
    assert enc._encode_int64s_small(values) == enc._encode_int64s_vector(arr)


@PROPS
@given(int64_lists())
def test_int64_encoding_is_never_larger_than_raw(values: list[int]) -> None:
    data = _roundtrip_int64(values)
    if values:
        assert len(data) <= 2 + len(values) * enc._signed_width(min(values), max(values))


def test_int64_empty_list() -> None:
    data = _roundtrip_int64([])
    assert len(data) == 2
    assert decode_int64s(data, 0).size == 0


@pytest.mark.parametrize("value", [I64_MIN, -129, -1, 0, 5, 127, 2**40, I64_MAX])
def test_int64_single_value(value: int) -> None:
    data = _roundtrip_int64([value])
    assert len(data) <= 10


@pytest.mark.parametrize("n", [2, 9, SMALL_LIST + 5, 10_000])
def test_int64_constant_list_is_const_kind(n: int) -> None:
    data = _roundtrip_int64([I64_MIN] * n)
    if n >= 8:
        assert data[0] == enc.KIND_CONST
        assert len(data) == 10


@pytest.mark.parametrize("n", [3, SMALL_LIST + 1, 100_000])
def test_int64_arithmetic_sequence_is_delta_const(n: int) -> None:
    values = np.arange(n, dtype=np.int64) * 1_000_000_007 + 1_700_000_000_000_000_000
    data = _roundtrip_int64(values)
    if n >= 10:
        assert data[0] == enc.KIND_DELTA_CONST
        assert len(data) == 18


def test_int64_jittered_timestamps_use_delta_of_delta_at_width_1() -> None:
    rng = np.random.default_rng(7)
    steps = 1_000_000 + rng.integers(-50, 50, 5000)
    values = 1_700_000_000_000_000_000 + np.cumsum(steps)
    data = _roundtrip_int64(values)
    assert (data[0], data[1]) == (enc.KIND_DELTA_OF_DELTA, 1)
    assert len(data) == 18 + (values.size - 2)


def test_int64_sorted_ids_use_delta() -> None:
    rng = np.random.default_rng(8)
    values = np.cumsum(rng.integers(0, 30_000, 1000)) + 10**15
    data = _roundtrip_int64(values)
    assert (data[0], data[1]) == (enc.KIND_DELTA, 2)


def test_int64_small_values_use_raw_at_one_byte() -> None:
    values = np.random.default_rng(9).integers(-100, 100, 1000)
    data = _roundtrip_int64(values)
    assert (data[0], data[1], len(data)) == (enc.KIND_RAW, 1, 1002)


@pytest.mark.parametrize(
    "values",
    [
        [I64_MIN, I64_MAX],
        [I64_MAX, I64_MIN],
        [I64_MIN, I64_MAX] * 40,
        [0, I64_MAX, I64_MIN, 0],
        [I64_MIN, -1, I64_MIN],  # deltas fit, second differences overflow
        [I64_MIN, -1, I64_MIN] * 20,
        [I64_MAX, 0, I64_MAX] * 20,
    ],
)
def test_int64_deltas_that_overflow_fall_back_without_loss(values: list[int]) -> None:
    data = _roundtrip_int64(values)
    assert data[0] == enc.KIND_RAW


def test_int64_huge_but_fitting_deltas_still_roundtrip() -> None:
    values = [I64_MIN, -1, I64_MAX - 1, 0, I64_MIN + 5] * 10
    _roundtrip_int64(values)


def test_int64_accepts_narrow_and_unsigned_integer_dtypes() -> None:
    for dtype in (np.int8, np.uint16, np.int32, np.uint64, np.bool_):
        arr = np.arange(50).astype(dtype)
        np.testing.assert_array_equal(decode_int64s(encode_int64s(arr), 50), arr.astype(np.int64))
    assert decode_int64s(encode_int64s([3, 1, 2]), 3).tolist() == [3, 1, 2]


def test_int64_encoder_rejects_lossy_input() -> None:
    with pytest.raises(ValueError, match="uint64"):
        encode_int64s(np.array([2**63], dtype=np.uint64))
    with pytest.raises(TypeError):
        encode_int64s(np.array([1.5]))
    with pytest.raises(ValueError, match="1-D"):
        encode_int64s(np.zeros((2, 2), dtype=np.int64))


def test_int64_decoded_array_is_writable_and_owns_its_data() -> None:
    data = encode_int64s(np.arange(100, dtype=np.int64) ** 2)
    out = decode_int64s(data, 100)
    out[0] = 42  # must not raise (not a read-only view of `data`)
    assert out.flags.writeable


@PROPS
@given(int64_lists(), st.data())
def test_int64_truncated_or_extended_input_raises(values: list[int], data: st.DataObject) -> None:
    encoded = encode_int64s(np.array(values, dtype=np.int64))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_int64s(encoded[:cut], len(values))
    with pytest.raises(DecodeError):
        decode_int64s(encoded + data.draw(st.binary(min_size=1, max_size=9)), len(values))


@pytest.mark.parametrize("wrong", [-1, 1, 2, 1000])
def test_int64_wrong_count_raises(wrong: int) -> None:
    encoded = encode_int64s(np.arange(5, dtype=np.int64) ** 3)
    with pytest.raises(DecodeError):
        decode_int64s(encoded, 5 + wrong)


@PROPS
@given(st.binary(max_size=64), st.integers(0, 80))
def test_int64_garbage_raises_only_decode_error(data: bytes, count: int) -> None:
    try:
        out = decode_int64s(data, count)
    except DecodeError:
        return
    assert out.dtype == np.int64
    assert out.size == count


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x04", "too short"),
        (b"\x09\x01", "unknown kind"),
        (b"\x04\x03" + b"\0" * 9, "invalid width"),
        (b"\x04\x00", "invalid width"),
        (b"\x00\x01" + b"\0" * 8, "nonzero width"),
        (b"\x00\x00" + b"\0" * 9, "must be 10 bytes"),
        (b"\x01\x00" + b"\0" * 8, "must be 18 bytes"),
    ],
)
def test_int64_malformed_headers_raise(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_int64s(data, 3)


def test_int64_kind_that_cannot_hold_the_count_raises() -> None:
    with pytest.raises(DecodeError, match="cannot encode 0 values"):
        decode_int64s(struct.pack("<BBq", enc.KIND_DELTA, 1, 5), 0)
    with pytest.raises(DecodeError, match="cannot encode 1 values"):
        decode_int64s(struct.pack("<BBqq", enc.KIND_DELTA_OF_DELTA, 1, 5, 1), 1)


@pytest.mark.parametrize("count", [2, SMALL_LIST + 10])
def test_int64_delta_overflowing_on_decode_raises(count: int) -> None:
    data = struct.pack("<BBq", enc.KIND_DELTA, 1, I64_MAX) + b"\x01" * (count - 1)
    with pytest.raises(DecodeError, match="overflow"):
        decode_int64s(data, count)
    wide = struct.pack("<BBq", enc.KIND_DELTA, 8, I64_MIN) + struct.pack(
        f"<{count - 1}q", *([-1] * (count - 1))
    )
    with pytest.raises(DecodeError, match="overflow"):
        decode_int64s(wide, count)


@pytest.mark.parametrize("count", [3, SMALL_LIST + 10])
def test_int64_delta_of_delta_overflowing_on_decode_raises(count: int) -> None:
    # Values stay small but the running deltas leave int64.
    data = struct.pack("<BBqq", enc.KIND_DELTA_OF_DELTA, 8, 0, I64_MAX) + struct.pack(
        f"<{count - 2}q", *([I64_MAX] * (count - 2))
    )
    with pytest.raises(DecodeError, match="overflow"):
        decode_int64s(data, count)
    values = struct.pack("<BBqq", enc.KIND_DELTA_OF_DELTA, 1, I64_MAX - 1, 1) + b"\x01" * (count - 2)
    with pytest.raises(DecodeError, match="overflow"):
        decode_int64s(values, count)


def test_int64_delta_const_overflowing_on_decode_raises() -> None:
    data = struct.pack("<BBqq", enc.KIND_DELTA_CONST, 0, I64_MAX - 1, 1)
    assert decode_int64s(data, 2).tolist() == [I64_MAX - 1, I64_MAX]
    with pytest.raises(DecodeError, match="overflow"):
        decode_int64s(data, 3)


def test_int64_delta_const_decodes_across_int64_range_exactly() -> None:
    step = 2**62
    data = struct.pack("<BBqq", enc.KIND_DELTA_CONST, 0, I64_MIN, step)
    assert decode_int64s(data, 4).tolist() == [I64_MIN + i * step for i in range(4)]


def test_int64_const_count_is_bounded_before_allocating() -> None:
    data = encode_int64s(np.zeros(10, dtype=np.int64))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_int64s(data, 10**12)
    assert decode_int64s(data, 100, max_count=100).size == 100


@pytest.mark.parametrize("count", [-1, 1.0, "3", None, True])
def test_int64_invalid_count_raises(count: object) -> None:
    with pytest.raises(DecodeError):
        decode_int64s(b"\x04\x01", count)  # type: ignore[arg-type]


def test_int64_accepts_numpy_integer_count() -> None:
    data = encode_int64s(np.arange(3, dtype=np.int64))
    assert decode_int64s(data, np.int64(3)).tolist() == [0, 1, 2]


def test_int64_decodes_from_memoryview_and_bytearray() -> None:
    values = np.arange(0, 5000, 3, dtype=np.int64)
    data = encode_int64s(values)
    np.testing.assert_array_equal(decode_int64s(memoryview(data), values.size), values)
    np.testing.assert_array_equal(decode_int64s(bytearray(data), values.size), values)
    framed = b"xx" + data + b"yy"
    np.testing.assert_array_equal(decode_int64s(memoryview(framed)[2:-2], values.size), values)


# ----------------------------------------------------------------------------------- float64s


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _roundtrip_float(values: list[float] | np.ndarray) -> bytes:
    arr = np.asarray(values, dtype=np.float64)
    data = encode_float64s(arr)
    out = decode_float64s(data, arr.size)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(_bits(out), _bits(arr))
    return data


any_floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
decimal_floats = st.builds(lambda m, e: m / 10.0**e, st.integers(-(10**12), 10**12), st.integers(0, 6))


@PROPS
@given(st.lists(st.one_of(any_floats, decimal_floats), max_size=3 * SMALL_LIST))
def test_float_roundtrip_is_bit_exact(values: list[float]) -> None:
    _roundtrip_float(values)


@PROPS
@given(st.lists(decimal_floats, max_size=3 * SMALL_LIST))
def test_float_decimals_roundtrip_and_never_grow(values: list[float]) -> None:
    data = _roundtrip_float(values)
    assert len(data) <= 1 + 8 * len(values)


@PROPS
@given(
    st.lists(
        st.one_of(decimal_floats, st.floats(-1e19, 1e19, allow_subnormal=False)),
        min_size=1,
        max_size=SMALL_LIST,
    )
)
def test_float_small_and_vector_decimal_search_agree(values: list[float]) -> None:
    assume(not any(x == 0.0 and np.signbit(x) for x in values))
    small = enc._find_decimal_small(values)
    vector = enc._find_decimal_vector(np.array(values, dtype=np.float64))
    if small is None or vector is None:
        assert small is None and vector is None
    else:
        assert small[0] == vector[0]
        assert small[1] == vector[1].tolist()


@pytest.mark.parametrize("n", [10, 1000])
def test_float_two_decimal_values_are_stored_as_mantissas(n: int) -> None:
    values = np.round(np.random.default_rng(3).random(n) * 1000, 2)
    data = _roundtrip_float(values)
    assert data[0] == enc.FLOAT_DECIMAL
    assert data[1] <= 2
    assert len(data) <= 4 + 4 * n  # mantissas below 10**5 fit 4 bytes, vs 8 raw


@pytest.mark.parametrize(
    "special",
    [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 1e300, 1e19, -9.3e18],
)
@pytest.mark.parametrize("n", [1, 4, SMALL_LIST + 3])
def test_float_special_values_stay_raw_and_exact(special: float, n: int) -> None:
    values = [1.5] * n
    values[n // 2] = special
    data = _roundtrip_float(values)
    assert data[0] == enc.FLOAT_RAW


def test_float_nan_payload_bits_survive() -> None:
    odd_nan = np.array([0x7FF8_0000_DEAD_BEEF], dtype=np.uint64).view(np.float64)
    _roundtrip_float(np.concatenate([odd_nan, [1.0, 2.0]]))


def test_float_positive_zero_is_decimal_but_negative_zero_is_not() -> None:
    assert encode_float64s([0.0] * 40)[0] == enc.FLOAT_DECIMAL
    assert encode_float64s([0.0] * 39 + [-0.0])[0] == enc.FLOAT_RAW


def test_float_empty_and_single() -> None:
    assert decode_float64s(encode_float64s([]), 0).size == 0
    _roundtrip_float([0.1])


def test_float_accepts_float32_and_integer_input() -> None:
    f32 = np.array([0.1, 0.5, 3.25], dtype=np.float32)
    np.testing.assert_array_equal(decode_float64s(encode_float64s(f32), 3), f32.astype(np.float64))
    assert decode_float64s(encode_float64s(np.arange(3)), 3).tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError):
        encode_float64s(np.array(["a"]))


@PROPS
@given(st.lists(st.one_of(any_floats, decimal_floats), max_size=50), st.data())
def test_float_truncated_or_extended_input_raises(values: list[float], data: st.DataObject) -> None:
    encoded = encode_float64s(np.array(values, dtype=np.float64))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_float64s(encoded[:cut], len(values))
    with pytest.raises(DecodeError):
        decode_float64s(encoded + data.draw(st.binary(min_size=1, max_size=9)), len(values))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "missing the kind"),
        (b"\x02", "unknown kind"),
        (b"\x01", "without its exponent"),
        (b"\x01\x13" + encode_int64s([1, 2]), "exponent 19"),
        (b"\x01\x02\x09\x01", "mantissas"),
        (b"\x00" + b"\0" * 15, "RAW with 2 values must be 17 bytes"),
    ],
)
def test_float_malformed_input_raises(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_float64s(data, 2)


@PROPS
@given(st.binary(max_size=64), st.integers(0, 40))
def test_float_garbage_raises_only_decode_error(data: bytes, count: int) -> None:
    try:
        out = decode_float64s(data, count)
    except DecodeError:
        return
    assert out.dtype == np.float64
    assert out.size == count


# --------------------------------------------------------------------------------- bytes lists


@PROPS
@given(st.lists(st.binary(max_size=40), max_size=3 * SMALL_LIST))
def test_bytes_list_roundtrip(items: list[bytes]) -> None:
    data = encode_bytes_list(items)
    assert decode_bytes_list(data, len(items)) == items
    assert decode_bytes_list(memoryview(data), len(items)) == items
    assert decode_bytes_list(bytearray(data), len(items)) == items
    payload, offsets = decode_bytes_offsets(data, len(items))
    assert offsets.tolist()[0] == 0
    assert [bytes(payload[a:b]) for a, b in itertools.pairwise(offsets.tolist())] == items
    assert all(type(x) is bytes for x in decode_bytes_list(memoryview(data), len(items)))


def test_bytes_list_large_payload_roundtrip() -> None:
    rng = np.random.default_rng(5)
    items = [rng.bytes(int(n)) for n in rng.integers(0, 600, 5000)]
    data = encode_bytes_list(items)
    assert decode_bytes_list(data, len(items)) == items
    assert decode_bytes_list(memoryview(b"\0" + data)[1:], len(items)) == items


def test_bytes_list_empty_and_all_empty_items() -> None:
    assert decode_bytes_list(encode_bytes_list([]), 0) == []
    assert decode_bytes_list(encode_bytes_list([b""] * 100), 100) == [b""] * 100


@PROPS
@given(st.lists(st.binary(max_size=20), max_size=2 * SMALL_LIST), st.data())
def test_bytes_list_truncated_or_extended_input_raises(items: list[bytes], data: st.DataObject) -> None:
    encoded = encode_bytes_list(items)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_bytes_list(encoded[:cut], len(items))
    extra = encoded + data.draw(st.binary(min_size=1, max_size=9))
    with pytest.raises(DecodeError):
        decode_bytes_list(extra, len(items))
    with pytest.raises(DecodeError):
        decode_bytes_offsets(extra, len(items))


def _crafted_bytes_list(lengths: list[int], payload: bytes) -> bytes:
    lens = encode_int64s(np.array(lengths, dtype=np.int64))
    return put_uvarint(len(lens)) + lens + payload


@pytest.mark.parametrize("n_items", [2, SMALL_LIST + 2])
def test_bytes_list_negative_length_raises(n_items: int) -> None:
    lengths = [-1] + [1] * (n_items - 1)
    data = _crafted_bytes_list(lengths, b"x" * (n_items - 2))
    with pytest.raises(DecodeError, match="negative"):
        decode_bytes_list(data, n_items)


@pytest.mark.parametrize("n_items", [2, SMALL_LIST + 2])
def test_bytes_list_lengths_must_match_payload(n_items: int) -> None:
    data = _crafted_bytes_list([3] * n_items, b"x" * (3 * n_items - 1))
    with pytest.raises(DecodeError):
        decode_bytes_list(data, n_items)


def test_bytes_list_huge_lengths_do_not_overflow_into_a_match() -> None:
    # Sums wrap to exactly the payload size in 64-bit arithmetic.
    n = 40
    lengths = [2**62] * 4 + [0] * (n - 5) + [3]
    with pytest.raises(DecodeError):
        decode_bytes_list(_crafted_bytes_list(lengths, b"abc"), n)


def test_bytes_list_lengths_block_overrunning_input_raises() -> None:
    with pytest.raises(DecodeError, match="overruns"):
        decode_bytes_list(put_uvarint(50) + b"\x04\x01", 1)


@PROPS
@given(st.binary(max_size=64), st.integers(0, 40))
def test_bytes_list_garbage_raises_only_decode_error(data: bytes, count: int) -> None:
    try:
        out = decode_bytes_list(data, count)
    except DecodeError:
        return
    assert len(out) == count


# ---------------------------------------------------------------------------- dictionary codes


@pytest.mark.parametrize(
    ("dict_size", "width"),
    [(1, 1), (256, 1), (257, 2), (65536, 2), (65537, 4), (2**32, 4)],
)
def test_dict_codes_use_the_narrowest_width(dict_size: int, width: int) -> None:
    codes = np.array([0, dict_size - 1, dict_size // 2] * 5, dtype=np.int64)
    data = encode_dict_codes(codes, dict_size)
    assert len(data) == width * codes.size
    out = decode_dict_codes(data, codes.size, dict_size)
    assert out.dtype.itemsize == width
    assert out.dtype.kind == "u"
    np.testing.assert_array_equal(out, codes)


@PROPS
@given(st.integers(1, 70_000), st.data())
def test_dict_codes_roundtrip(dict_size: int, data: st.DataObject) -> None:
    codes = data.draw(st.lists(st.integers(0, dict_size - 1), max_size=50))
    arr = np.array(codes, dtype=np.int64)
    out = decode_dict_codes(encode_dict_codes(arr, dict_size), len(codes), dict_size)
    assert out.tolist() == codes


def test_dict_codes_empty() -> None:
    assert encode_dict_codes(np.array([], dtype=np.int64), 0) == b""
    assert decode_dict_codes(b"", 0, 0).size == 0


def test_dict_codes_out_of_range_code_raises_on_decode() -> None:
    with pytest.raises(DecodeError, match="out of range"):
        decode_dict_codes(bytes([0, 1, 5]), 3, 5)
    with pytest.raises(DecodeError, match="out of range"):
        decode_dict_codes(b"\x00", 1, 0)
    assert decode_dict_codes(bytes([0, 1, 4]), 3, 5).tolist() == [0, 1, 4]


@pytest.mark.parametrize("codes", [[-1], [5], [0, 7]])
def test_dict_codes_encoder_rejects_out_of_range_codes(codes: list[int]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_dict_codes(np.array(codes), 5)


def test_dict_codes_encoder_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_dict_codes(np.array([0]), 2**32 + 1)
    with pytest.raises(TypeError):
        encode_dict_codes(np.array([0.0]), 3)


@pytest.mark.parametrize(
    ("data", "count", "dict_size"),
    [
        (b"\x00\x00", 1, 5),
        (b"\x00", 2, 5),
        (b"\x00\x00\x00", 2, 300),
        (b"", 1, 2**33),
        (b"", -1, 3),
    ],
)
def test_dict_codes_malformed_input_raises(data: bytes, count: int, dict_size: int) -> None:
    with pytest.raises(DecodeError):
        decode_dict_codes(data, count, dict_size)


@PROPS
@given(st.binary(max_size=40), st.integers(0, 20), st.integers(0, 70_000))
def test_dict_codes_garbage_raises_only_decode_error(data: bytes, count: int, dict_size: int) -> None:
    try:
        out = decode_dict_codes(data, count, dict_size)
    except DecodeError:
        return
    assert out.size == count
    assert count == 0 or int(out.max()) < dict_size


def test_decode_error_is_a_value_error_and_a_lamina_error() -> None:
    from lamina.errors import LaminaError

    assert issubclass(DecodeError, ValueError)
    assert issubclass(DecodeError, LaminaError)


@st.composite
def delta_payloads(draw: st.DrawFn) -> tuple[bytes, int]:
    """Arbitrary well-formed DELTA / DELTA_OF_DELTA records, including ones that overflow."""
    kind = draw(st.sampled_from([enc.KIND_DELTA, enc.KIND_DELTA_OF_DELTA]))
    width = draw(st.sampled_from([1, 2, 4, 8]))
    lim = 1 << (8 * width - 1)
    steps = draw(st.lists(st.integers(-lim, lim - 1), max_size=SMALL_LIST - 2))
    head = [draw(edgy_int64s) for _ in range(1 if kind == enc.KIND_DELTA else 2)]
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[width]
    data = struct.pack(f"<BB{len(head)}q{len(steps)}{code}", kind, width, *head, *steps)
    return data, len(steps) + len(head)


@PROPS
@given(delta_payloads())
def test_int64_small_and_vector_decoders_agree(payload: tuple[bytes, int]) -> None:
    data, count = payload

    def run() -> list[int] | str:
        try:
            return decode_int64s(data, count).tolist()
        except DecodeError:
            return "DecodeError"

    small = run()
    saved = enc.SMALL_LIST
    enc.SMALL_LIST = -1  # type: ignore[misc]  # force the numpy path
    try:
        vector = run()
    finally:
        enc.SMALL_LIST = saved  # type: ignore[misc]
    assert small == vector
