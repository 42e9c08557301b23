"""Block compression: codecs, dictionaries, parallel packing, strict decompression."""

from __future__ import annotations

import json
import random
import struct
import threading

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.format import compression
from lamina.format.checksum import crc32c
from lamina.format.compression import (
    CODEC_RAW,
    CODEC_ZSTD,
    CODEC_ZSTD_DICT,
    MIN_COMPRESS_SIZE,
    ZstdDict,
    compress,
    compress_many,
    decompress,
    pack,
    train_dictionary,
    unpack,
)
from lamina.format.encoding import DecodeError

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _span_blocks(n: int, seed: int = 1) -> list[bytes]:
    """JSON-ish trace blocks of a few KB, like the payload column of a trace part."""
    rnd = random.Random(seed)
    services = ["checkout", "cart", "payments", "frontend", "search", "auth"]
    blocks = []
    for t in range(n):
        spans = [
            json.dumps(
                {
                    "trace_id": f"{t:032x}",
                    "span_id": f"{rnd.getrandbits(64):016x}",
                    "service": rnd.choice(services),
                    "name": f"GET /api/v1/items/{rnd.randint(1, 500)}",
                    "duration_us": rnd.randint(10, 900_000),
                    "attributes": {"http.status_code": rnd.choice([200, 200, 404, 500])},
                }
            )
            for _ in range(rnd.randint(3, 12))
        ]
        blocks.append("\n".join(spans).encode())
    return blocks


@pytest.fixture(scope="module")
def blocks() -> list[bytes]:
    return _span_blocks(400)


@pytest.fixture(scope="module")
def zdict(blocks: list[bytes]) -> ZstdDict:
    d = train_dictionary(blocks[:300], size=16 * 1024)
    assert d is not None
    return d


# ------------------------------------------------------------------------------ compress/decompress


@pytest.mark.parametrize("level", [1, 3, 9])
def test_compress_roundtrips_at_each_level(blocks: list[bytes], level: int) -> None:
    for b in blocks[:20]:
        frame = compress(b, level)
        assert decompress(frame, len(b)) == b


def test_frames_carry_content_size_but_no_checksum_or_dict_id(blocks: list[bytes], zdict: ZstdDict) -> None:
    for frame in (compress(blocks[0]), compress(blocks[0], 3, zdict)):
        params = zstandard.get_frame_parameters(frame)
        assert params.content_size == len(blocks[0])
        assert not params.has_checksum
        assert params.dict_id == 0


def test_compress_accepts_memoryview_and_bytearray(blocks: list[bytes]) -> None:
    b = blocks[1]
    assert decompress(compress(memoryview(b)), len(b)) == b
    assert decompress(memoryview(compress(bytearray(b))), len(b)) == b


def test_empty_input_roundtrips() -> None:
    assert decompress(compress(b""), 0) == b""


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_decompress_rejects_wrong_expected_length(blocks: list[bytes], delta: int) -> None:
    frame = compress(blocks[2])
    with pytest.raises(DecodeError, match="declares"):
        decompress(frame, len(blocks[2]) + delta)


def test_decompress_rejects_negative_length() -> None:
    with pytest.raises(DecodeError):
        decompress(compress(b"abc"), -1)


def test_decompress_refuses_impossible_sizes_before_allocating() -> None:
    # A frame header that claims 1 TiB: no block of a 20-byte frame can produce that.
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", 1 << 40)
    frame = header + b"\x01\x00\x00"  # one empty raw last block
    with pytest.raises(DecodeError, match="cannot expand"):
        decompress(frame, 1 << 40)


def test_decompress_rejects_trailing_bytes(blocks: list[bytes]) -> None:
    frame = compress(blocks[3])
    with pytest.raises(DecodeError):
        decompress(frame + b"\x00", len(blocks[3]))
    with pytest.raises(DecodeError):
        decompress(frame + frame, len(blocks[3]))


def test_decompress_empty_frame_rejects_trailing_and_truncation() -> None:
    frame = compress(b"")
    with pytest.raises(DecodeError):
        decompress(frame + b"junk", 0)
    for cut in range(len(frame)):
        with pytest.raises(DecodeError):
            decompress(frame[:cut], 0)


def test_decompress_rejects_every_truncation(blocks: list[bytes]) -> None:
    b = blocks[4]
    frame = compress(b)
    for cut in range(len(frame)):
        with pytest.raises(DecodeError):
            decompress(frame[:cut], len(b))


@PROPS
@given(st.binary(max_size=200), st.integers(0, 5000))
def test_decompress_garbage_raises_only_decode_error(data: bytes, raw_len: int) -> None:
    try:
        out = decompress(data, raw_len)
    except DecodeError:
        return
    assert len(out) == raw_len


@PROPS
@given(st.binary(max_size=300), st.integers(0, 300))
def test_decompress_with_corrupted_frame_raises_only_decode_error(data: bytes, pos: int) -> None:
    raw = (data * 3) or b"x"
    frame = bytearray(compress(raw))
    frame[pos % len(frame)] ^= 0x5A
    try:
        out = decompress(bytes(frame), len(raw))
    except DecodeError:
        return
    assert len(out) == len(raw)  # zstd cannot always tell; the block checksum will


# ------------------------------------------------------------------------------------ pack/unpack


def test_pack_stores_tiny_blocks_raw() -> None:
    small = b"a" * (MIN_COMPRESS_SIZE - 1)
    assert pack(small) == (CODEC_RAW, small)


def test_pack_stores_incompressible_blocks_raw() -> None:
    noise = random.Random(2).randbytes(4096)
    codec, payload = pack(noise)
    assert codec == CODEC_RAW
    assert payload == noise
    assert unpack(codec, payload, len(noise)) == noise


def test_pack_compresses_and_unpack_restores(blocks: list[bytes]) -> None:
    for b in blocks[:50]:
        codec, payload = pack(b)
        assert codec == CODEC_ZSTD
        assert len(payload) < len(b)
        assert unpack(codec, payload, len(b)) == b
        assert unpack(codec, memoryview(payload), len(b)) == b


def test_pack_with_dictionary_uses_codec_2(blocks: list[bytes], zdict: ZstdDict) -> None:
    b = blocks[350]  # not among the training samples
    codec, payload = pack(b, 3, zdict)
    assert codec == CODEC_ZSTD_DICT
    assert unpack(codec, payload, len(b), zdict) == b


def test_unpack_raw_returns_bytes_and_checks_length() -> None:
    assert unpack(CODEC_RAW, memoryview(b"abc"), 3) == b"abc"
    assert type(unpack(CODEC_RAW, memoryview(b"abc"), 3)) is bytes
    with pytest.raises(DecodeError, match="expected 4"):
        unpack(CODEC_RAW, b"abc", 4)


def test_unpack_rejects_unknown_codec_and_missing_dictionary(blocks: list[bytes]) -> None:
    with pytest.raises(DecodeError, match="unknown block codec 7"):
        unpack(7, b"abc", 3)
    codec, payload = CODEC_ZSTD_DICT, compress(blocks[0])
    with pytest.raises(DecodeError, match="dictionary"):
        unpack(codec, payload, len(blocks[0]))


# ----------------------------------------------------------------------------------- dictionaries


def test_dictionary_shrinks_small_blocks(blocks: list[bytes], zdict: ZstdDict) -> None:
    test = blocks[300:]
    plain = sum(len(pack(b)[1]) for b in test)
    with_dict = sum(len(pack(b, 3, zdict)[1]) for b in test)
    assert with_dict < 0.8 * plain


def test_dict_id_is_the_crc32c_of_the_bytes(zdict: ZstdDict) -> None:
    assert zdict.dict_id == crc32c(zdict.data)
    assert 0 <= zdict.dict_id < 2**32
    assert ZstdDict(zdict.data).dict_id == zdict.dict_id
    assert ZstdDict(memoryview(zdict.data)).dict_id == zdict.dict_id
    assert len(zdict) == len(zdict.data) <= 16 * 1024


def test_a_reloaded_dictionary_decompresses_frames(blocks: list[bytes], zdict: ZstdDict) -> None:
    frame = compress(blocks[399], 3, zdict)
    reloaded = ZstdDict(bytes(zdict.data))
    assert decompress(frame, len(blocks[399]), reloaded) == blocks[399]


def test_raw_content_dictionary_works() -> None:
    d = ZstdDict(b'{"service": "checkout", "name": "GET /api/v1/items/"}' * 4)
    data = b'{"service": "checkout", "name": "GET /api/v1/items/42"}' * 2
    codec, payload = pack(data, 3, d)
    assert unpack(codec, payload, len(data), d) == data


def test_damaged_dictionary_fails_decompression_with_decode_error(zdict: ZstdDict) -> None:
    frame = compress(b"hello world " * 50, 3, zdict)
    damaged = ZstdDict(zdict.data[:8] + b"\x01" * 200)  # zstd dictionary magic, garbage tables
    with pytest.raises(DecodeError):
        decompress(frame, 600, damaged)
    with pytest.raises(DecodeError):
        unpack(CODEC_ZSTD_DICT, frame, 600, damaged)


def test_empty_dictionary_is_rejected() -> None:
    with pytest.raises(DecodeError):
        ZstdDict(b"")


@pytest.mark.parametrize(
    "samples",
    [[], [b"x"] * 3, [b"a"] * 50, [b""] * 100, [bytes([i]) for i in range(20)]],
)
def test_training_failure_returns_none_instead_of_raising(samples: list[bytes]) -> None:
    assert train_dictionary(samples, size=4096) is None


def test_training_error_from_zstd_returns_none(blocks: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise zstandard.ZstdError("cannot train dict: Src size is incorrect")

    monkeypatch.setattr(zstandard, "train_dictionary", fail)
    assert train_dictionary(blocks, size=4096) is None


def test_training_returns_a_usable_dictionary(blocks: list[bytes]) -> None:
    d = train_dictionary(blocks[:200], size=8 * 1024)
    assert d is not None
    assert 0 < len(d) <= 8 * 1024


# ------------------------------------------------------------------------------------- threading


def test_compress_many_serial_matches_pack(blocks: list[bytes]) -> None:
    small = blocks[:10]
    assert compress_many(small, 3, None, threads=2) == [pack(b) for b in small]


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_compress_many_parallel_matches_serial_in_order(blocks: list[bytes], threads: int) -> None:
    items = blocks * 2 + [b"tiny", random.Random(3).randbytes(5000)]
    assert sum(map(len, items)) > compression.PARALLEL_MIN_BYTES
    assert compress_many(items, 3, None, threads) == [pack(b) for b in items]


def test_compress_many_parallel_with_dictionary(blocks: list[bytes], zdict: ZstdDict) -> None:
    items = blocks * 2
    packed = compress_many(items, 3, zdict, threads=2)
    assert packed == [pack(b, 3, zdict) for b in items]
    assert all(unpack(c, p, len(b), zdict) == b for (c, p), b in zip(packed, items, strict=True))


def test_compress_many_propagates_errors() -> None:
    with pytest.raises(TypeError):
        compress_many([b"x" * 100_000] * 4 + [None], 3, None, threads=2)  # type: ignore[list-item]


def test_contexts_are_per_thread_and_safe_under_concurrency(blocks: list[bytes], zdict: ZstdDict) -> None:
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(200):
                b = rnd.choice(blocks)
                d = zdict if rnd.random() < 0.5 else None
                codec, payload = pack(b, rnd.choice([1, 3]), d)
                assert unpack(codec, payload, len(b), d) == b
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert compression._compressor(3) is compression._compressor(3)
    other: list[object] = []
    t = threading.Thread(target=lambda: other.append(compression._compressor(3)))
    t.start()
    t.join()
    assert other[0] is not compression._compressor(3)
