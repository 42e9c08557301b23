"""Per-block tag summaries (the `tags.tff` sidecar): for every block and every tag of a part, a
Bloom filter over the tag's distinct values in that block and the min/max of its int values.

Why: tag values live in per-granule chunks, so a query filtering on a tag (service == "api",
status IN (500, 503), latency >= 1000) would otherwise decode every chunk and every block it
touches. With these summaries it skips, from memory, every block that cannot hold a match
(BanyanDB's stream engine keeps the same per-block, per-tag blooms and int min/max in its
`.tff`/`.tfm` files). Summaries are built by the part writer from the tag values it is writing,
so flushes and merges (raw-copied blocks included) always produce them, for every engine whose
`FileLayout` asks for them; an engine never computes or writes one.

Values are hashed *typed*: the key of a value is its tag type byte followed by its payload (as in
`tags.py`), so 1, "1", b"1" and True are different values, exactly as tag equality is. Floats are
hashed after `+ 0.0`, so -0.0 and 0.0 (equal values) share a key. A string array (tuple of str)
is added under its own key and under each item's str key, so "array contains x" can prune too.

Bloom probes use the double hashing of `bloom.py` (xxh3-128 halves h1, h2; probe j is
(h1 mod m + j * (h2 mod (m-1) + 1)) mod m), each block's filter sized to its own distinct values
(BITS_PER_KEY bits each, whole 64-bit words; 0 bits when the block has no value for the tag).

Sidecar (before the small-file framing of `part_writer.pack_small_file`)::

    version u8 (=1) | hashes u8 | bits_per_key u8 | uvarint n_blocks | uvarint n_tags |
    uvarint n_columns | uvarint len + bytes-list of column names |
    n_blocks x (n_tags + n_columns) SUMMARY records | filter bits (byte-aligned filters)

Tags are the part's tags in sorted order (as in `metadata.json`), then the columns the layout
names in `filter_columns` (granule-file columns such as an element ID: their values travel
through the writer for raw-copied blocks too); blocks are in part order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from lamina.format.bloom import _hash_halves
from lamina.format.encoding import (
    Buffer,
    DecodeError,
    decode_bytes_list,
    encode_bytes_list,
    get_uvarint,
    put_uvarint,
)
from lamina.format.tags import MODE_DICT, T_FLOAT, TagDict, _payload, type_code

FORMAT_V1: Final = 1
#: ~1 % false positives at 10 bits and 7 probes per distinct value (per block).
BITS_PER_KEY: Final = 10
HASHES: Final = 7

#: One (block, tag) summary: filter size in bits (0 = no value of the tag in the block), byte
#: offset of its bits, whether the block holds int values of the tag, and their min and max.
SUMMARY = np.dtype([("nbits", "<u4"), ("offset", "<u8"), ("has_int", "u1"), ("min", "<i8"), ("max", "<i8")])

_HEAD: Final = struct.Struct("<BBB")


def value_key(value: Any) -> bytes:
    """The bytes a tag value is hashed as: type byte + payload (floats with -0.0 folded to 0.0)."""
    t = type_code(value)
    if t == T_FLOAT:
        value = value + 0.0
    return bytes([t]) + _payload(t, value)


def value_keys(values: Sequence[Any]) -> list[bytes]:
    """`value_key` of each value; single-type str/bytes lists without a per-value type dispatch."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return [b"\x01" + v.encode() for v in values]
    if kinds == {bytes}:
        return [b"\x04" + v for v in values]
    return list(map(value_key, values))


def expanded_keys(values: Sequence[Any]) -> tuple[np.ndarray, list[bytes]]:
    """Every filter key of `values` and the index of the value each belongs to: one key per
    value, plus one str key per item of each string array."""
    keys = value_keys(values)
    if not any(type(v) is tuple for v in values):
        return np.arange(len(values), dtype=np.int64), keys
    owner = list(range(len(values)))
    for i, v in enumerate(values):
        if type(v) is tuple:
            keys.extend(b"\x01" + x.encode() for x in v)
            owner.extend([i] * len(v))
    return np.array(owner, dtype=np.int64), keys


def _distinct_pairs(pbid: np.ndarray, halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (block, key hash) pairs, sorted by block."""
    order = np.lexsort((halves[:, 1], halves[:, 0], pbid))
    pbid, halves = pbid[order], halves[order]
    new = np.ones(len(pbid), dtype=bool)
    new[1:] = (pbid[1:] != pbid[:-1]) | (halves[1:, 0] != halves[:-1, 0]) | (halves[1:, 1] != halves[:-1, 1])
    return pbid[new], halves[new]


def _sizes(counts: np.ndarray) -> np.ndarray:
    """Filter bits per block for `counts` distinct values: whole words, 0 for none."""
    words = -(-counts.astype(np.int64) * BITS_PER_KEY // 64)
    return words * 64


def _probe_bits(m: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """(HASHES, n) probe positions within filters of m bits (m per key, all >= 64)."""
    mu = m.astype(np.uint64)
    out = np.empty((HASHES, len(mu)), dtype=np.uint64)
    np.remainder(halves[:, 0], mu, out=out[0])
    step = halves[:, 1] % (mu - np.uint64(1)) + np.uint64(1)
    for j in range(1, HASHES):
        p = out[j]
        np.add(out[j - 1], step, out=p)
        np.subtract(p, mu, out=p, where=p >= mu)
    return out


class TagFilterBuilder:
    """Collects the summaries of a part being written, granule by granule."""

    def __init__(self, tag_names: Sequence[str], columns: Sequence[str] = ()) -> None:
        self.tag_names = list(tag_names)
        self.columns = list(columns)
        self._records: list[np.ndarray] = []  # per granule: (n_blocks, n_tags) SUMMARY
        self._bits: list[bytes] = []
        self._bit_bytes = 0
        # per DICT tag, computed once per part: hash halves of every key, the first key of each
        # code (CSR offsets; a string array has several keys), and per code is-int / int value
        self._dict_cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def add_granule(
        self,
        counts: np.ndarray,
        columns: Sequence[tuple[int, TagDict | None, np.ndarray]],
        column_values: Sequence[np.ndarray] = (),
    ) -> None:
        """Summaries of one granule: `counts` rows per block, and per tag (in `tag_names` order)
        its mode, dictionary and codes (DICT) or values (PLAIN) for every row of the granule;
        then the values of each filtered column (in `columns` order)."""
        nb = len(counts)
        nt = len(self.tag_names)
        rec = np.zeros((nb, nt + len(self.columns)), dtype=SUMMARY)
        bid = np.repeat(np.arange(nb, dtype=np.int64), counts)
        for k, (t, (mode, tdict, col)) in enumerate(zip(self.tag_names, columns, strict=True)):
            if mode == MODE_DICT:
                assert tdict is not None
                ubid, halves, ibid, ints = self._dict_distinct(t, tdict, bid, np.asarray(col, np.int64))
            else:
                ubid, halves, ibid, ints = _plain_distinct(bid, col)
            self._fill(rec[:, k], nb, ubid, halves, ibid, ints)
        for j, vals in enumerate(column_values):
            self._fill(rec[:, nt + j], nb, *_plain_distinct(bid, vals))
        self._records.append(rec)

    def _dict_distinct(
        self, tag: str, tdict: TagDict, bid: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cache = self._dict_cache.get(tag)
        if cache is None or len(cache[2]) != len(tdict) + 1:
            vals = tdict.values
            owner, keys = expanded_keys(vals)
            order = np.argsort(owner, kind="stable")
            halves = _hash_halves(keys)[order] if keys else np.zeros((0, 2), np.uint64)
            start = np.zeros(len(vals) + 2, dtype=np.int64)  # keys of code c: start[c]:start[c+1]
            np.cumsum(np.bincount(owner + 1, minlength=len(vals) + 1), out=start[1:])
            is_int = np.array([False, *(type(v) is int for v in vals)], dtype=bool)
            ival = np.array([0, *(v if type(v) is int else 0 for v in vals)], dtype=np.int64)
            cache = self._dict_cache[tag] = (halves, start, is_int, ival)
        halves, start, is_int, ival = cache
        width = len(tdict) + 1
        pairs = np.unique(bid * width + codes)  # distinct (block, code), sorted by block
        ubid, ucode = pairs // width, pairs % width
        present = ucode != 0
        ubid, ucode = ubid[present], ucode[present]
        ints = is_int[ucode]
        nkeys = start[ucode + 1] - start[ucode]
        if len(nkeys) and (nkeys.max() > 1 or nkeys.min() < 1):  # string arrays: several keys
            kb = np.repeat(ubid, nkeys)
            kh = halves[
                np.repeat(start[ucode] - (np.cumsum(nkeys) - nkeys), nkeys) + np.arange(int(nkeys.sum()))
            ]
            kb, kh = _distinct_pairs(kb, kh)
        else:
            kb, kh = ubid, halves[start[ucode]]
        return kb, kh, ubid[ints], ival[ucode[ints]]

    def _fill(
        self,
        rec: np.ndarray,
        nb: int,
        ubid: np.ndarray,
        halves: np.ndarray,
        ibid: np.ndarray,
        ints: np.ndarray,
    ) -> None:
        """Bloom bits and int bounds of one tag over the granule's blocks, from the distinct
        (block, value hash) pairs `ubid`/`halves` (sorted by block) and int values by block."""
        nbits = _sizes(np.bincount(ubid, minlength=nb))
        base = np.zeros(nb, dtype=np.int64)
        np.cumsum(nbits[:-1], out=base[1:])
        total = int(nbits.sum())
        rec["nbits"] = nbits
        rec["offset"] = self._bit_bytes + base // 8
        if total:
            marks = np.zeros(total, dtype=np.bool_)
            pos = _probe_bits(nbits[ubid], halves)
            marks[(pos + base[ubid].astype(np.uint64)).ravel()] = True
            self._bits.append(np.packbits(marks, bitorder="little").tobytes())
            self._bit_bytes += total // 8
        if len(ibid):
            order = np.argsort(ibid, kind="stable")
            ibid, ints = ibid[order], ints[order]
            starts = np.flatnonzero(np.concatenate(([True], ibid[1:] != ibid[:-1])))
            blocks = ibid[starts]
            rec["has_int"][blocks] = 1
            rec["min"][blocks] = np.minimum.reduceat(ints, starts)
            rec["max"][blocks] = np.maximum.reduceat(ints, starts)

    def to_bytes(self) -> bytes:
        recs = (
            np.concatenate(self._records)
            if self._records
            else np.zeros((0, len(self.tag_names) + len(self.columns)), dtype=SUMMARY)
        )
        head = _HEAD.pack(FORMAT_V1, HASHES, BITS_PER_KEY) + put_uvarint(len(recs))
        cols = encode_bytes_list([c.encode() for c in self.columns])
        return b"".join(
            (
                head,
                put_uvarint(len(self.tag_names)),
                put_uvarint(len(self.columns)),
                put_uvarint(len(cols)),
                cols,
                recs.tobytes(),
                *self._bits,
            )
        )


def _plain_distinct(
    bid: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (block, value hash) pairs and int values by block for a PLAIN tag column."""
    vals = values.tolist()
    present = [i for i, v in enumerate(vals) if v is not None]
    if not present:
        e = np.zeros(0, np.int64)
        return e, np.zeros((0, 2), np.uint64), e, e
    owner, keys = expanded_keys([vals[i] for i in present])
    pbid, halves = _distinct_pairs(bid[np.array(present, dtype=np.int64)][owner], _hash_halves(keys))
    int_rows = np.array([i for i in present if type(vals[i]) is int], dtype=np.int64)
    ints = np.array([vals[i] for i in int_rows.tolist()], dtype=np.int64)
    return pbid, halves, bid[int_rows], ints


class TagFilters:
    """The decoded sidecar of one part: answers "may block b hold value v of tag t?"."""

    __slots__ = ("_bits", "_cols", "_index", "columns", "hashes", "records")

    def __init__(
        self,
        records: np.ndarray,
        bits: bytes,
        tag_names: Sequence[str],
        hashes: int,
        columns: Sequence[str] = (),
    ) -> None:
        self.records, self._bits, self.hashes = records, bits, hashes
        self._index = {t: k for k, t in enumerate(tag_names)}
        self.columns = list(columns)
        self._cols = {c: len(tag_names) + j for j, c in enumerate(columns)}

    @classmethod
    def from_bytes(cls, data: Buffer, tag_names: Sequence[str], n_blocks: int) -> TagFilters:
        """Parse and validate against the part (its sorted tag names and block count); every
        filter must lie inside the bits and be a whole number of words, else DecodeError."""
        view = memoryview(data)
        if len(view) < _HEAD.size:
            raise DecodeError("tag filters: shorter than the header")
        version, hashes, _bpk = _HEAD.unpack_from(view, 0)
        if version != FORMAT_V1:
            raise DecodeError(f"tag filters: unknown format {version}")
        if hashes != HASHES:
            raise DecodeError(f"tag filters: {hashes} probes, this reader uses {HASHES}")
        nb, pos = get_uvarint(view, _HEAD.size)
        nt, pos = get_uvarint(view, pos)
        if (nb, nt) != (n_blocks, len(tag_names)):
            raise DecodeError(
                f"tag filters cover {nb} blocks x {nt} tags, the part has {n_blocks} x {len(tag_names)}"
            )
        nc, pos = get_uvarint(view, pos)
        clen, pos = get_uvarint(view, pos)
        if pos + clen > len(view):
            raise DecodeError("tag filters: column names overrun the file")
        columns = [c.decode() for c in decode_bytes_list(view[pos : pos + clen], nc)]
        pos += clen
        width = nt + nc
        size = nb * width * SUMMARY.itemsize
        if pos + size > len(view):
            raise DecodeError("tag filters: summary records overrun the file")
        records = np.frombuffer(view[pos : pos + size], dtype=SUMMARY).reshape(nb, width)
        bits = bytes(view[pos + size :])
        # Bounds in uint64, offset checked alone first: a damaged u64 offset cast to int64 could
        # wrap negative and pass, then index out of the bits at query time (an IndexError, not a
        # CorruptPartError). With offset <= len(bits) and nbits < 2**32 the sum cannot wrap.
        nbits = records["nbits"].astype(np.uint64)
        offsets = records["offset"].astype(np.uint64)
        limit = np.uint64(len(bits))
        if nbits.size and (
            bool(np.any(nbits % np.uint64(64)))
            or bool(np.any(offsets > limit))
            or bool(np.any(offsets + nbits // np.uint64(8) > limit))
            or bool(np.any(records["has_int"] > 1))
            or bool(np.any((records["has_int"] == 1) & (records["min"] > records["max"])))
        ):
            raise DecodeError("tag filters: a summary lies outside the filter bits or is malformed")
        return cls(records, bits, tag_names, hashes, columns)

    def has_tag(self, tag: str) -> bool:
        return tag in self._index

    def may_match(self, tag: str, values: Sequence[Any]) -> np.ndarray:
        """Per block: False when no value of `values` can be `tag`'s value in that block."""
        k = self._index.get(tag)
        if k is None or not values:
            return np.zeros(len(self.records), dtype=bool)
        return self._match_keys(k, value_keys(values))

    def column_may_match(self, column: str, values: Sequence[Any]) -> np.ndarray | None:
        """`may_match` for a filtered column; None when the column has no filters here."""
        k = self._cols.get(column)
        if k is None:
            return None
        if not values:
            return np.zeros(len(self.records), dtype=bool)
        return self._match_keys(k, value_keys(values))

    def _match_keys(self, k: int, keys: Sequence[bytes], per_key: bool = False) -> np.ndarray:
        """Per block, whether any of `keys` may be in tag k's filter (with `per_key`, for a
        single-block view: whether each key may be)."""
        rec = self.records[:, k]
        n = len(rec)
        nbits = rec["nbits"].astype(np.int64)
        live = np.flatnonzero(nbits)
        out = np.zeros(len(keys) if per_key else n, dtype=bool)
        if not len(live) or not keys:
            return out
        words = np.frombuffer(self._bits, dtype=np.uint8)
        if per_key:  # one block, many keys: every key's probes at once
            m = np.full(len(keys), nbits[0], dtype=np.int64)
            pos = _probe_bits(m, _hash_halves(keys)) + np.uint64(int(rec["offset"][0]) * 8)
            return ((words[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1).all(axis=0)
        m = nbits[live]
        base = rec["offset"][live].astype(np.uint64) * np.uint64(8)
        for h in _hash_halves(keys):  # few keys, many blocks: each key over every block at once
            pos = _probe_bits(m, np.broadcast_to(h, (len(m), 2))) + base
            out[live] |= ((words[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1).all(
                axis=0
            )
        return out

    def int_ranges(self, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per block: (holds int values of `tag`, their min, their max)."""
        k = self._index.get(tag)
        if k is None:
            n = len(self.records)
            return np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
        rec = self.records[:, k]
        return rec["has_int"].astype(bool), rec["min"].astype(np.int64), rec["max"].astype(np.int64)

    def check_block(self, block: int, tag: str, values: np.ndarray, *, column: bool = False) -> str | None:
        """Deep check: the summary of (block, tag or filtered column) must admit every value the
        block holds; a description of the first disagreement, or None."""
        present = [v for v in values.tolist() if v is not None]
        if not present:
            return None
        k = self._cols[tag] if column else self._index[tag]
        what = f"{'column' if column else 'tag'} {tag!r}"
        rec = self.records[block, k]
        if int(rec["nbits"]) == 0:
            return f"{what}: block {block} holds values but its filter is empty"
        ints = [v for v in present if type(v) is int]
        if ints and (not rec["has_int"] or min(ints) < int(rec["min"]) or max(ints) > int(rec["max"])):
            return f"{what}: block {block} int values outside the stored min/max"
        keys = list(dict.fromkeys(expanded_keys(present)[1]))
        single = TagFilters(self.records[block : block + 1, k : k + 1], self._bits, [tag], self.hashes)
        hits = single._match_keys(0, keys, per_key=True)
        if not hits.all():
            bad = keys[int(np.argmin(hits))]
            return f"{what}: block {block} filter rejects its own value (key {bad!r})"
        return None


__all__ = ["SUMMARY", "TagFilterBuilder", "TagFilters", "expanded_keys", "value_key", "value_keys"]
