"""Part-level Bloom filter: no false negatives, near-theoretical false positives, strict parsing."""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.format.bloom import BloomFilter, _hash_halves
from lamina.format.encoding import DecodeError

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
keys_st = st.lists(st.binary(min_size=0, max_size=24), max_size=300, unique=True)


@PROPS
@given(keys_st)
def test_every_added_key_is_found(keys: list[bytes]) -> None:
    bf = BloomFilter.build(keys)
    assert all(bf.may_contain(k) for k in keys)
    if keys:
        assert bf.may_contain_any(keys)
        assert bf.may_contain_any([b"absent-" + k for k in keys] + [keys[-1]])


@PROPS
@given(keys_st, st.integers(1, 24), st.integers(1, 16))
def test_no_false_negatives_for_any_parameters(keys: list[bytes], bpk: int, k: int) -> None:
    bf = BloomFilter.build(keys, bits_per_key=bpk, hashes=k)
    assert all(bf.may_contain(key) for key in keys)
    assert bf.nbits % 64 == 0
    assert bf.nbits >= max(64, len(keys) * bpk)


def test_false_positive_rate_is_close_to_theory() -> None:
    n = 100_000
    keys = [os.urandom(16) for _ in range(n)]
    probes = [os.urandom(17) for _ in range(n)]  # other length: never one of `keys`
    bf = BloomFilter.build(keys, bits_per_key=16, hashes=10)
    assert all(bf.may_contain(k) for k in keys[:5000])
    fp = sum(bf.may_contain(p) for p in probes) / n
    theory = (1 - math.exp(-10 * n / bf.nbits)) ** 10  # ~0.05 %
    assert fp < 0.01
    assert fp < 4 * theory + 0.0005


def test_empty_filter_contains_nothing() -> None:
    bf = BloomFilter.build([])
    assert bf.nbits == 64
    assert not bf.may_contain(b"")
    assert not bf.may_contain(b"anything")
    assert not bf.may_contain_any([b"a", b"b"])
    assert not bf.may_contain_any([str(i).encode() for i in range(50)])
    assert not bf.may_contain_any([])
    assert not BloomFilter.from_bytes(bf.to_bytes()).may_contain(b"x")


def test_vectorized_and_scalar_queries_agree() -> None:
    keys = [f"trace-{i}".encode() for i in range(2000)]
    bf = BloomFilter.build(keys, bits_per_key=4, hashes=3)  # small filter: many positives
    probes = [f"other-{i}".encode() for i in range(3000)]
    scalar = [bf.may_contain(p) for p in probes]
    assert any(scalar)
    assert not all(scalar)
    for i in range(0, 3000, 37):
        chunk = probes[i : i + 37]
        assert bf.may_contain_any(chunk) == any(scalar[i : i + 37])


def test_hash_halves_split_the_128_bit_intdigest() -> None:
    keys = [b"", b"a", os.urandom(40)]
    halves = _hash_halves(keys)
    for key, (hi, lo) in zip(keys, halves.tolist(), strict=True):
        h = xxhash.xxh3_128_intdigest(key)
        assert (hi, lo) == (h >> 64, h & (2**64 - 1))


def test_serialization_roundtrips() -> None:
    keys = [os.urandom(16) for _ in range(1000)]
    bf = BloomFilter.build(keys, bits_per_key=10, hashes=7)
    data = bf.to_bytes()
    assert len(data) == 10 + bf.nbits // 8
    assert data[:10] == struct.pack("<BBQ", 1, 7, bf.nbits)
    again = BloomFilter.from_bytes(memoryview(data))
    assert (again.nbits, again.hashes) == (bf.nbits, bf.hashes)
    assert again.to_bytes() == data
    assert all(again.may_contain(k) for k in keys)


def test_build_is_deterministic() -> None:
    keys = [b"k%d" % i for i in range(500)]
    assert BloomFilter.build(keys).to_bytes() == BloomFilter.build(list(reversed(keys))).to_bytes()


@pytest.mark.parametrize(("bpk", "k"), [(0, 10), (16, 0), (16, 65)])
def test_build_rejects_bad_parameters(bpk: int, k: int) -> None:
    with pytest.raises(ValueError):
        BloomFilter.build([b"a"], bits_per_key=bpk, hashes=k)


def _valid() -> bytes:
    return BloomFilter.build([b"a", b"b", b"c"]).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than"),
        (b"\x01\x0a", "shorter than"),
        (b"\x02" + _valid()[1:], "unknown format"),
        (b"\x01\x00" + _valid()[2:], "hash count 0"),
        (b"\x01\x41" + _valid()[2:], "hash count 65"),
        (struct.pack("<BBQ", 1, 10, 0), "positive multiple of 64"),
        (struct.pack("<BBQ", 1, 10, 65) + bytes(9), "positive multiple of 64"),
        (struct.pack("<BBQ", 1, 10, 2**63) + bytes(8), "need"),
        (_valid()[:-1], "need"),
        (_valid() + b"\x00", "need"),
    ],
)
def test_from_bytes_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        BloomFilter.from_bytes(data)


def test_from_bytes_rejects_every_truncation() -> None:
    data = _valid()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            BloomFilter.from_bytes(data[:cut])


@PROPS
@given(st.binary(max_size=80))
def test_from_bytes_garbage_raises_only_decode_error(data: bytes) -> None:
    try:
        bf = BloomFilter.from_bytes(data)
    except DecodeError:
        return
    assert isinstance(bf.may_contain(b"x"), bool)
    assert isinstance(bf.may_contain_any([b"%d" % i for i in range(20)]), bool)


def test_positions_stay_in_range_for_large_filters() -> None:
    halves = np.array([[2**64 - 1, 2**64 - 1], [0, 0], [2**63, 1]], dtype=np.uint64)
    nbits = 64 * 10**6
    pos = BloomFilter._positions(halves, nbits, 16)
    assert pos.shape == (16, 3)
    assert int(pos.max()) < nbits
