"""CRC32C: the Castagnoli polynomial, identical for every bytes-like input."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from lamina.format.checksum import crc32c


def test_crc32c_matches_the_standard_check_value() -> None:
    # The "check" value of CRC-32C (iSCSI / Castagnoli) for b"123456789".
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_crc32c_is_not_zlib_crc32() -> None:
    assert crc32c(b"123456789") != zlib.crc32(b"123456789")


@given(st.binary(max_size=2000))
def test_crc32c_is_the_same_for_bytes_bytearray_and_memoryview(data: bytes) -> None:
    want = crc32c(data)
    assert 0 <= want < 2**32
    assert crc32c(bytearray(data)) == want
    assert crc32c(memoryview(data)) == want
    assert crc32c(memoryview(b"pre" + data + b"post")[3 : 3 + len(data)]) == want


def test_crc32c_detects_a_single_bit_flip() -> None:
    data = bytearray(b"x" * 4096)
    base = crc32c(data)
    for i in range(0, len(data) * 8, 997):
        data[i // 8] ^= 1 << (i % 8)
        assert crc32c(data) != base
        data[i // 8] ^= 1 << (i % 8)
