"""The two-level block index: `meta.bin` (granule summaries, kept in RAM) -> `primary.bin`
(granules of block records) -> column frames in data files.

Records are fixed-width numpy structured arrays, not varints: decoding a granule is one
`frombuffer`, and pruning by key or time is a vectorised comparison instead of a Python loop per
block (measured: pure-Python varint records cost ~4 us per block, 5x a struct).

Every frame is addressed by an `ENTRY`: offset and size in its file, uncompressed length, CRC32C of
the stored bytes, and codec. The checksum covers stored bytes so a raw copy can verify a frame
without decompressing it.

primary.bin granule (before compression):
    uvarint n_blocks | uvarint len + bytes-list of block keys |
    n x BLOCK record | n x n_block_streams x ENTRY
meta.bin (before compression):
    uvarint n_granules | uvarint n_block_streams | uvarint n_granule_streams |
    uvarint len + bytes-list of first keys | uvarint len + bytes-list of last keys |
    g x GRANULE record | g x n_granule_streams x ENTRY
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from lamina.format.encoding import (
    DecodeError,
    decode_bytes_list,
    encode_bytes_list,
    get_uvarint,
    put_uvarint,
)

ENTRY = np.dtype([("offset", "<u8"), ("size", "<u4"), ("raw", "<u4"), ("crc", "<u4"), ("codec", "u1")])
BLOCK = np.dtype([("rows", "<u4"), ("min_ts", "<i8"), ("max_ts", "<i8")])
GRANULE = np.dtype(
    [("blocks", "<u4"), ("rows", "<u4"), ("min_ts", "<i8"), ("max_ts", "<i8"), ("primary", ENTRY)]
)


def _put_bytes_list(items: Sequence[bytes]) -> bytes:
    b = encode_bytes_list(items)
    return put_uvarint(len(b)) + b


def _get_bytes_list(view: memoryview, pos: int, count: int) -> tuple[list[bytes], int]:
    n, pos = get_uvarint(view, pos)
    if pos + n > len(view):
        raise DecodeError(f"key list of {n} bytes overruns the record at {pos}")
    return decode_bytes_list(view[pos : pos + n], count), pos + n


def _get_array(view: memoryview, pos: int, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    count = int(np.prod(shape)) if shape else 1
    nbytes = count * dtype.itemsize
    if pos + nbytes > len(view):
        raise DecodeError(f"{count} {dtype} records overrun the record at {pos}")
    arr = np.frombuffer(view[pos : pos + nbytes], dtype=dtype).reshape(shape)
    return arr, pos + nbytes


@attrs.frozen
class Granule:
    keys: list[bytes]
    blocks: np.ndarray  # BLOCK records
    entries: np.ndarray  # (n_blocks, n_block_streams) ENTRY


def encode_granule(keys: Sequence[bytes], blocks: np.ndarray, entries: np.ndarray) -> bytes:
    return b"".join((put_uvarint(len(keys)), _put_bytes_list(keys), blocks.tobytes(), entries.tobytes()))


def decode_granule(data: bytes | memoryview, n_streams: int, expected_blocks: int) -> Granule:
    view = memoryview(data)
    n, pos = get_uvarint(view, 0)
    if n != expected_blocks:
        raise DecodeError(f"granule holds {n} blocks, meta.bin says {expected_blocks}")
    keys, pos = _get_bytes_list(view, pos, n)
    blocks, pos = _get_array(view, pos, BLOCK, (n,))
    entries, pos = _get_array(view, pos, ENTRY, (n, n_streams))
    if pos != len(view):
        raise DecodeError(f"{len(view) - pos} trailing bytes in granule")
    for i in range(1, n):
        if keys[i] < keys[i - 1]:
            raise DecodeError(f"block keys out of order at block {i} of granule")
    return Granule(keys, blocks, entries)


@attrs.frozen
class MetaIndex:
    first_keys: list[bytes]
    last_keys: list[bytes]
    granules: np.ndarray  # GRANULE records
    entries: np.ndarray  # (n_granules, n_granule_streams) ENTRY
    n_block_streams: int


def encode_meta(
    first_keys: Sequence[bytes],
    last_keys: Sequence[bytes],
    granules: np.ndarray,
    entries: np.ndarray,
    n_block_streams: int,
) -> bytes:
    return b"".join(
        (
            put_uvarint(len(granules)),
            put_uvarint(n_block_streams),
            put_uvarint(entries.shape[1] if entries.ndim == 2 else 0),
            _put_bytes_list(first_keys),
            _put_bytes_list(last_keys),
            granules.tobytes(),
            entries.tobytes(),
        )
    )


def decode_meta(data: bytes | memoryview, n_block_streams: int, n_granule_streams: int) -> MetaIndex:
    view = memoryview(data)
    g, pos = get_uvarint(view, 0)
    nb, pos = get_uvarint(view, pos)
    ng, pos = get_uvarint(view, pos)
    if (nb, ng) != (n_block_streams, n_granule_streams):
        raise DecodeError(
            f"meta.bin has {nb} block / {ng} granule streams, metadata.json says "
            f"{n_block_streams} / {n_granule_streams}"
        )
    first, pos = _get_bytes_list(view, pos, g)
    last, pos = _get_bytes_list(view, pos, g)
    granules, pos = _get_array(view, pos, GRANULE, (g,))
    entries, pos = _get_array(view, pos, ENTRY, (g, ng))
    if pos != len(view):
        raise DecodeError(f"{len(view) - pos} trailing bytes in meta.bin")
    return MetaIndex(first, last, granules, entries, nb)
