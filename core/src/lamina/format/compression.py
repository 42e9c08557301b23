"""Block compression: zstd with reusable per-thread contexts, optional part-level dictionaries.

Measured (shared/reference/block-compression.md): per-call zstd overhead is ~1 µs against ~25 µs
of real work per 3.5 KB block, so contexts are created once per thread and reused; a trained
part-level dictionary makes one frame per trace only ~7 % larger than compressing the whole
column. Frames carry their content size (so a damaged length is caught before allocating) but no
zstd checksum and no dictionary ID: every block is checksummed by the part, and the dictionary is
stored once per part with its own ID.

zstd contexts are not thread-safe, and zstd releases the GIL while it works, so each thread gets
its own compressor/decompressor objects (threading.local) and `compress_many` can use a second
core: on the 2-vCPU dev VM, 30,000 blocks of ~3.5 KB JSON-ish text took 0.32 s on one thread and
0.23 s on two (1.4x; 1.3x with a 64 KiB dictionary), measured while other jobs shared the CPUs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import zstandard

from lamina.format.checksum import crc32c
from lamina.format.encoding import Buffer, DecodeError

CODEC_RAW: Final = 0
CODEC_ZSTD: Final = 1
CODEC_ZSTD_DICT: Final = 2

# Below this a zstd frame header plus block header eats most of any gain.
MIN_COMPRESS_SIZE: Final = 64
# Below this total, handing work to threads costs more than it saves.
PARALLEL_MIN_BYTES: Final = 256 * 1024
# zstd needs a reasonable number of samples to train (fewer is a ZstdError anyway), and a
# dictionary trained on a few KiB of data cannot pay for its own storage in the part.
MIN_TRAINING_SAMPLES: Final = 8
MIN_TRAINING_BYTES: Final = 4096
_ZSTD_BLOCK_MAX: Final = 128 * 1024

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's dictionary-less compressor for `level` (created on first use)."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(
            level=level, write_checksum=False, write_content_size=True, write_dict_id=False
        )
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's dictionary-less decompressor."""
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


class ZstdDict:
    """A zstd dictionary plus the per-thread contexts that use it.

    `dict_id` is the CRC32C of the dictionary bytes: stable across processes and versions (unlike
    object identity), so a part records which dictionary its frames need and a reader can check
    it has the right one. Contexts bound to a dictionary are expensive to build (the dictionary is
    digested into tables), so they are cached per thread and per level on this object.
    """

    __slots__ = ("_dict", "_local", "data", "dict_id")

    def __init__(self, data: Buffer) -> None:
        self.data = bytes(data)
        if not self.data:  # DecodeError: the bytes usually come from a part's dictionary file
            raise DecodeError("empty zstd dictionary")
        self.dict_id = crc32c(self.data) & 0xFFFF_FFFF
        self._dict = zstandard.ZstdCompressionDict(self.data)
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"ZstdDict(dict_id={self.dict_id:#010x}, size={len(self.data)})"

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        """This thread's compressor bound to the dictionary at `level`."""
        cache: dict[int, zstandard.ZstdCompressor] | None = getattr(self._local, "cctx", None)
        if cache is None:
            cache = self._local.cctx = {}
        cctx = cache.get(level)
        if cctx is None:
            cctx = cache[level] = zstandard.ZstdCompressor(
                level=level,
                dict_data=self._dict,
                write_checksum=False,
                write_content_size=True,
                write_dict_id=False,
            )
        return cctx

    def decompressor(self) -> zstandard.ZstdDecompressor:
        """This thread's decompressor bound to the dictionary."""
        dctx: zstandard.ZstdDecompressor | None = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor(dict_data=self._dict)
        return dctx


def train_dictionary(samples: Sequence[Buffer], size: int = 64 * 1024) -> ZstdDict | None:
    """Train a part-level dictionary from sample blocks, or None when that is not possible.

    zstd refuses (ZstdError) when there are too few or too small samples; a dictionary is only an
    optimisation, so any failure means "compress without one" and never breaks ingest. Fewer than
    MIN_TRAINING_SAMPLES samples or MIN_TRAINING_BYTES bytes in all is not worth trying.
    """
    if len(samples) < MIN_TRAINING_SAMPLES or size <= 0:
        return None
    data = [bytes(s) for s in samples]
    if sum(map(len, data)) < MIN_TRAINING_BYTES:
        return None
    try:
        trained = zstandard.train_dictionary(size, data)
        return ZstdDict(trained.as_bytes())
    except (zstandard.ZstdError, ValueError, MemoryError):
        return None


def compress(data: Buffer, level: int = 3, dictionary: ZstdDict | None = None) -> bytes:
    """One zstd frame (content size recorded, no checksum, no dictionary ID)."""
    cctx = _compressor(level) if dictionary is None else dictionary.compressor(level)
    return cctx.compress(data)


def decompress(data: Buffer, raw_len: int, dictionary: ZstdDict | None = None) -> bytes:
    """Decompress exactly one frame that must expand to exactly `raw_len` bytes.

    The frame's declared content size is checked against `raw_len` *before* decompressing:
    python-zstandard sizes its output buffer from the frame header and ignores `max_output_size`
    when the header has a size, so a damaged header could otherwise allocate gigabytes. Trailing
    bytes after the frame are an error too. Any zstd failure becomes DecodeError.
    """
    if raw_len < 0:
        raise DecodeError(f"zstd frame: invalid expected length {raw_len}")
    # No zstd block (at least a 3-byte header) expands past 128 KiB: a larger claim is damage, and
    # refusing it here keeps a bad length from turning into a huge allocation.
    if raw_len > (len(data) // 3 + 1) * _ZSTD_BLOCK_MAX:
        raise DecodeError(f"zstd frame of {len(data)} bytes cannot expand to {raw_len} bytes")
    try:
        # Inside the try: a damaged dictionary only fails once zstd digests it.
        dctx = _decompressor() if dictionary is None else dictionary.decompressor()
        declared = zstandard.frame_content_size(data)
        if declared != raw_len:
            what = "unknown" if declared < 0 else str(declared)
            raise DecodeError(f"zstd frame declares {what} bytes, expected {raw_len}")
        if raw_len == 0:
            # The one-shot API returns b"" for a zero-size frame without reading the rest.
            obj = dctx.decompressobj()
            out = obj.decompress(data)
            if not obj.eof or obj.unused_data:
                raise DecodeError("zstd frame of 0 bytes is truncated or has trailing data")
        else:
            out = dctx.decompress(data, max_output_size=raw_len, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise DecodeError(f"zstd frame: {e}") from None
    if len(out) != raw_len:
        raise DecodeError(f"zstd frame decompressed to {len(out)} bytes, expected {raw_len}")
    return out


def pack(data: Buffer, level: int = 3, dictionary: ZstdDict | None = None) -> tuple[int, bytes]:
    """Compress one block if that pays: (CODEC_RAW, data) or (CODEC_ZSTD[_DICT], frame).

    Tiny blocks and incompressible ones (already compressed, random IDs) are stored raw, which
    also makes reading them free.
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    if len(raw) < MIN_COMPRESS_SIZE:
        return CODEC_RAW, raw
    frame = compress(raw, level, dictionary)
    if len(frame) >= len(raw):
        return CODEC_RAW, raw
    return (CODEC_ZSTD if dictionary is None else CODEC_ZSTD_DICT), frame


def unpack(codec: int, payload: Buffer, raw_len: int, dictionary: ZstdDict | None = None) -> bytes:
    """Inverse of `pack`; the stored `raw_len` is checked for every codec."""
    if codec == CODEC_RAW:
        if len(payload) != raw_len:
            raise DecodeError(f"raw block is {len(payload)} bytes, expected {raw_len}")
        return payload if isinstance(payload, bytes) else bytes(payload)
    if codec == CODEC_ZSTD:
        return decompress(payload, raw_len)
    if codec == CODEC_ZSTD_DICT:
        if dictionary is None:
            raise DecodeError("block needs the part's zstd dictionary, but none was given")
        return decompress(payload, raw_len, dictionary)
    raise DecodeError(f"unknown block codec {codec}")


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """The shared executor with `threads` workers, created on first use."""
    with _pool_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="lamina-zstd")
        return pool


def _forget_pools() -> None:
    # A forked child inherits the executors but not their threads; start afresh there.
    global _pool_lock
    _pool_lock = threading.Lock()
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _pack_chunk(items: Sequence[Buffer], level: int, dictionary: ZstdDict | None) -> list[tuple[int, bytes]]:
    return [pack(x, level, dictionary) for x in items]


def compress_many(
    items: Sequence[Buffer],
    level: int = 3,
    dictionary: ZstdDict | None = None,
    threads: int = 2,
) -> list[tuple[int, bytes]]:
    """`pack` every item, in order, on up to `threads` threads.

    zstd releases the GIL, so with enough work a second core nearly doubles throughput. Items are
    split into one contiguous chunk per thread (a future per block would cost as much as
    compressing it) and the calling thread packs the first chunk itself rather than idling.
    Small batches run serially.
    """
    n = len(items)
    if threads <= 1 or n < 2 * threads or sum(map(len, items)) < PARALLEL_MIN_BYTES:
        return _pack_chunk(items, level, dictionary)
    bounds = [n * i // threads for i in range(threads + 1)]
    pool = _pool(threads - 1)
    futures = [
        pool.submit(_pack_chunk, items[bounds[i] : bounds[i + 1]], level, dictionary)
        for i in range(1, threads)
    ]
    out = _pack_chunk(items[bounds[0] : bounds[1]], level, dictionary)
    for f in futures:
        out.extend(f.result())
    return out
