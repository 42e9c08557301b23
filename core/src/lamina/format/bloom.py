"""Part-level Bloom filter over block keys (trace IDs, series IDs).

A lookup by key must skip every part that cannot hold it without reading that part's index; a
Bloom filter answers "definitely not here" from a few cache lines. With the defaults (16 bits per
key, 10 probes) the theoretical false-positive rate is (1 - e^(-10/16))^10 ~ 0.05 %.

Probe positions use double hashing (Kirsch & Mitzenmacher): one xxh3-128 hash per key, split into
two 64-bit halves h1 (high) and h2 (low); probe j is (h1 mod m + j * (h2 mod (m-1) + 1)) mod m. The
step is never 0, so a key always sets `k` probes (not one bit k times). Building is vectorized:
the keys are hashed in one pass (the only per-key Python work), then every position of every key
is computed with k numpy operations over all keys at once.

Serialized: ``format:u8 (=1) k:u8 nbits:u64 bits:u8*(nbits/8)``, all little-endian; bit p lives
in byte p >> 3 at bit p & 7, which is also bit p & 63 of little-endian 64-bit word p >> 6.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import xxhash

from lamina.format.encoding import Buffer, DecodeError

FORMAT_V1: Final = 1
MAX_HASHES: Final = 64
_HEADER: Final = struct.Struct("<BBQ")
_MASK64: Final = (1 << 64) - 1
# Below this many keys, a Python loop beats setting up numpy arrays.
_SMALL_QUERY: Final = 8


def _hash_halves(keys: Sequence[bytes]) -> npt.NDArray[np.uint64]:
    """(n, 2) array of the high and low 64-bit halves of each key's xxh3-128.

    `xxh3_128_digest` is the big-endian form of `xxh3_128_intdigest`, so reading it as two
    big-endian uint64 gives exactly (intdigest >> 64, intdigest & (2**64-1)) without per-key
    Python integer arithmetic.
    """
    raw = b"".join(map(xxhash.xxh3_128_digest, keys))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)


class BloomFilter:
    """An immutable Bloom filter; build it with `build`, load it with `from_bytes`."""

    __slots__ = ("_bits", "hashes", "nbits")

    def __init__(self, bits: bytes, nbits: int, hashes: int) -> None:
        if nbits <= 0 or nbits % 64 or len(bits) * 8 != nbits:
            raise ValueError(f"bloom filter: {len(bits)} bytes do not hold {nbits} bits")
        if not 1 <= hashes <= MAX_HASHES:
            raise ValueError(f"bloom filter: hash count {hashes} outside 1..{MAX_HASHES}")
        self._bits = bits
        self.nbits = nbits
        self.hashes = hashes

    def __repr__(self) -> str:
        return f"BloomFilter(nbits={self.nbits}, hashes={self.hashes})"

    @classmethod
    def build(cls, keys: Sequence[bytes], bits_per_key: int = 16, hashes: int = 10) -> BloomFilter:
        """A filter holding `keys`, sized at `bits_per_key` bits per key (whole 64-bit words).

        An empty key set gives one all-zero word: it answers False to everything, which is right.
        """
        if bits_per_key < 1:
            raise ValueError(f"bits_per_key must be >= 1, got {bits_per_key}")
        if not 1 <= hashes <= MAX_HASHES:
            raise ValueError(f"hashes must be in 1..{MAX_HASHES}, got {hashes}")
        n = len(keys)
        nbits = max(1, -(-n * bits_per_key // 64)) * 64
        if not n:
            return cls(bytes(nbits // 8), nbits, hashes)
        # Setting bits in a bool array and packing it measured 4x faster than
        # np.bitwise_or.at on words (4 ms vs 16 ms for 100k keys).
        marks = np.zeros(nbits, dtype=np.bool_)
        marks[cls._positions(_hash_halves(keys), nbits, hashes).ravel()] = True
        return cls(np.packbits(marks, bitorder="little").tobytes(), nbits, hashes)

    @staticmethod
    def _positions(halves: npt.NDArray[np.uint64], nbits: int, hashes: int) -> npt.NDArray[np.uint64]:
        """(hashes, n) bit positions: row j holds probe j of every key.

        Probe j+1 = probe j + step, minus m when it passes m: one add and one conditional subtract
        per row instead of a 64-bit modulo per position (~30 % faster), same values.
        """
        m = np.uint64(nbits)
        out = np.empty((hashes, halves.shape[0]), dtype=np.uint64)
        np.remainder(halves[:, 0], m, out=out[0])
        step = halves[:, 1] % np.uint64(nbits - 1) + np.uint64(1)
        for j in range(1, hashes):
            p = out[j]
            np.add(out[j - 1], step, out=p)
            np.subtract(p, m, out=p, where=p >= m)
        return out

    def may_contain(self, key: bytes) -> bool:
        """False means `key` is certainly absent; True means it may be present."""
        h = xxhash.xxh3_128_intdigest(key)
        m = self.nbits
        p = (h >> 64) % m
        step = (h & _MASK64) % (m - 1) + 1
        bits = self._bits
        for _ in range(self.hashes):
            if not (bits[p >> 3] >> (p & 7)) & 1:
                return False
            p += step
            if p >= m:
                p -= m
        return True

    def may_contain_any(self, keys: Sequence[bytes]) -> bool:
        """True if any of `keys` may be present (vectorized for larger key lists)."""
        if len(keys) < _SMALL_QUERY:
            return any(self.may_contain(k) for k in keys)
        pos = self._positions(_hash_halves(keys), self.nbits, self.hashes)
        words = np.frombuffer(self._bits, dtype=np.uint8)
        hit = (words[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1
        return bool(hit.all(axis=0).any())

    def to_bytes(self) -> bytes:
        """Serialized form (see the module docstring)."""
        return _HEADER.pack(FORMAT_V1, self.hashes, self.nbits) + self._bits

    @classmethod
    def from_bytes(cls, data: Buffer) -> BloomFilter:
        """Parse `to_bytes` output; DecodeError unless format, k, nbits and length all agree."""
        n = len(data)
        if n < _HEADER.size:
            raise DecodeError(f"bloom filter: {n} bytes, shorter than the {_HEADER.size}-byte header")
        fmt, k, nbits = _HEADER.unpack_from(data, 0)
        if fmt != FORMAT_V1:
            raise DecodeError(f"bloom filter: unknown format {fmt}")
        if not 1 <= k <= MAX_HASHES:
            raise DecodeError(f"bloom filter: hash count {k} outside 1..{MAX_HASHES}")
        if nbits == 0 or nbits % 64:
            raise DecodeError(f"bloom filter: bit count {nbits} is not a positive multiple of 64")
        if n - _HEADER.size != nbits // 8:
            raise DecodeError(f"bloom filter: {nbits} bits need {nbits // 8} bytes, got {n - _HEADER.size}")
        return cls(bytes(memoryview(data)[_HEADER.size :]), nbits, k)
