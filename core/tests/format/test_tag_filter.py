"""Per-block tag summaries (`tags.tff`): no false negatives, useful negatives, exact int bounds,
kept through merges (raw copies included), checksummed at open and re-derived by the deep check."""

from __future__ import annotations

import random
from typing import Any

import attrs
import numpy as np
import pytest

from lamina import names
from lamina.batch import columns_from_batch
from lamina.errors import CorruptPartError, InvalidInputError
from lamina.format import tag_filter
from lamina.format.encoding import DecodeError
from lamina.format.part_reader import DirSource, MemSource, PartReader
from lamina.format.part_writer import MemSink, PartWriter, block_bounds, key_of, tags_for_rows
from lamina.format.rows import object_array, row_sizes, take
from lamina.format.tag_filter import TagFilterBuilder, TagFilters
from lamina.format.tags import MODE_DICT, MODE_PLAIN, TagDict
from lamina.io.fs import OSFileSystem
from lamina.plugins import Registry
from lamina.store import Store
from lamina.testing.damage import flip_bit, listed_parts, read_part_meta, table_dirs
from lamina.testing.kv import KV, kv_batch

KV_TF = attrs.evolve(KV, layout=attrs.evolve(KV.layout, tag_filters=True))
KINDS = {c.name: c.kind for c in KV.schema.columns}


def _random_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            lambda: f"s{rng.randrange(40)}",
            lambda: rng.randrange(-50, 50),
            lambda: b"b%d" % rng.randrange(20),
            lambda: None,
            lambda: rng.choice([True, False]),
            lambda: rng.choice([0.0, -0.0, 1.5]),
            lambda: tuple(f"a{rng.randrange(30)}" for _ in range(rng.randrange(4))),
        ]
    )()


@pytest.mark.parametrize("mode", [MODE_DICT, MODE_PLAIN])
def test_every_stored_value_matches_its_block_and_int_bounds_are_exact(mode: int) -> None:
    rng = random.Random(mode)
    counts = np.array([rng.randrange(1, 30) for _ in range(40)], dtype=np.int64)
    values = object_array([_random_value(rng) for _ in range(int(counts.sum()))])
    tdict = TagDict()
    col = tdict.codes(values) if mode == MODE_DICT else values
    b = TagFilterBuilder(["t"])
    b.add_granule(counts[:25], [(mode, tdict, col[: int(counts[:25].sum())])])
    b.add_granule(counts[25:], [(mode, tdict, col[int(counts[:25].sum()) :])])
    tf = TagFilters.from_bytes(b.to_bytes(), ["t"], len(counts))
    starts = np.concatenate(([0], np.cumsum(counts)))
    has, lo, hi = tf.int_ranges("t")
    for i in range(len(counts)):
        block = values[starts[i] : starts[i + 1]].tolist()
        present = [v for v in block if v is not None]
        for v in present:
            assert tf.may_match("t", [v])[i], (i, v)
            if type(v) is tuple:  # a string array also matches each of its items
                for x in v:
                    assert tf.may_match("t", [x])[i], (i, v, x)
        ints = [v for v in present if type(v) is int]
        assert bool(has[i]) == bool(ints)
        if ints:
            assert (int(lo[i]), int(hi[i])) == (min(ints), max(ints))
        assert tf.check_block(i, "t", values[starts[i] : starts[i + 1]]) is None
    # -0.0 and 0.0 are equal values: one matches wherever the other is stored
    for i in range(len(counts)):
        block = values[starts[i] : starts[i + 1]].tolist()
        if any(type(v) is float and v == 0.0 for v in block):
            assert tf.may_match("t", [-0.0])[i] and tf.may_match("t", [0.0])[i]


def test_absent_values_are_mostly_rejected() -> None:
    """Typed keys: an int never matches as its string; false positives stay near 1 %."""
    counts = np.full(200, 50, dtype=np.int64)
    values = object_array([f"v{i}" for i in range(int(counts.sum()))])
    b = TagFilterBuilder(["t"])
    b.add_granule(counts, [(MODE_PLAIN, None, values)])
    tf = TagFilters.from_bytes(b.to_bytes(), ["t"], len(counts))
    hit = tf.may_match("t", ["v120"])
    assert hit[2] and hit.sum() <= 5
    false_pos = sum(int(tf.may_match("t", [f"absent{j}"]).sum()) for j in range(50))
    assert false_pos / (50 * 200) < 0.03
    assert tf.may_match("t", [b"v1"]).sum() <= 5  # bytes b"v1" is not the str "v1"
    assert not tf.may_match("nope", ["v1"]).any()


def test_a_block_without_the_tag_matches_no_value() -> None:
    b = TagFilterBuilder(["t"])
    b.add_granule(np.array([2, 2]), [(MODE_PLAIN, None, object_array([None, None, "x", 3]))])
    tf = TagFilters.from_bytes(b.to_bytes(), ["t"], 2)
    assert tf.may_match("t", ["x", 3]).tolist() == [False, True]
    assert tf.int_ranges("t")[0].tolist() == [False, True]


def test_malformed_sidecar_is_a_decode_error() -> None:
    b = TagFilterBuilder(["t"])
    b.add_granule(np.array([3]), [(MODE_PLAIN, None, object_array(["a", "b", "c"]))])
    data = b.to_bytes()
    with pytest.raises(DecodeError, match="blocks x"):
        TagFilters.from_bytes(data, ["t"], 2)
    with pytest.raises(DecodeError, match=r"outside the filter bits|overrun"):
        TagFilters.from_bytes(data[:-1], ["t"], 1)


@pytest.mark.parametrize("offset", [2**63, 2**64 - 8, 2**40])
def test_a_huge_filter_offset_is_a_decode_error_not_an_index_error(offset: int) -> None:
    """Damage that keeps the checksum valid (or a writer bug) must still be caught at open: an
    offset past the bits, even one that wraps negative as int64, never reaches a query."""
    b = TagFilterBuilder(["t"])
    b.add_granule(np.array([3]), [(MODE_PLAIN, None, object_array(["a", "b", "c"]))])
    data = bytearray(b.to_bytes())
    good = TagFilters.from_bytes(bytes(data), ["t"], 1)
    rec = good.records.copy()
    rec["offset"][0, 0] = offset
    start = bytes(data).index(good.records.tobytes())
    data[start : start + rec.nbytes] = rec.tobytes()
    with pytest.raises(DecodeError, match="outside the filter bits"):
        TagFilters.from_bytes(bytes(data), ["t"], 1)


def _write_part(rows: dict[str, Any], layout: Any = KV_TF.layout) -> PartReader:
    keys = [key_of(KV.schema, k) for k in rows["key"]]
    order = np.lexsort((rows["ts"], np.array(keys, dtype=object)))
    rows = take(rows, order)
    keys = [keys[i] for i in order.tolist()]
    ptags, data = tags_for_rows(KV.schema, rows)
    sink = MemSink()
    w = PartWriter(sink, KV.schema, layout, ptags)
    w.add_rows(keys, rows, block_bounds(KV.schema, keys, row_sizes(KV.schema, rows)), data)
    meta = w.finish(part_id=1, engine="kv", dataset="default")
    return PartReader.open(MemSource(sink.files), names.part_name(1), meta=meta, kinds=KINDS)


def _kv_rows(n: int, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    keys = [b"k%02d" % rng.randrange(30) for _ in range(n)]
    tags = [{"svc": f"svc-{rng.randrange(5)}", "code": rng.choice([200, 404, 500])} for _ in range(n)]
    return columns_from_batch(KV.schema, kv_batch(keys, list(range(n)), tags=tags))


def test_reader_prunes_blocks_and_deep_check_passes() -> None:
    reader = _write_part(_kv_rows(600))
    assert names.TAG_FILTERS in reader.meta.files
    mask = reader.blocks_may_match("svc", ["svc-3"])
    for i in range(reader.meta.blocks):
        vals = reader.read_tags(i, ["svc"])["svc"].tolist()
        if "svc-3" in vals:
            assert mask[i]
        lo_hi = reader.block_int_range(i, "code")
        codes = reader.read_tags(i, ["code"])["code"].tolist()
        assert lo_hi == (min(codes), max(codes))
    assert reader.verify_all() > 0


def test_deep_check_catches_a_filter_that_rejects_stored_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidecar with a valid checksum but wrong bits (a writer bug) would make queries skip rows
    silently: `verify_all` (lamina check --deep) reports it naming tags.tff."""
    real = tag_filter._hash_halves
    monkeypatch.setattr(tag_filter, "_hash_halves", lambda keys: real([k + b"!" for k in keys]))
    b = TagFilterBuilder(["svc"])
    b.add_granule(np.array([3]), [(MODE_PLAIN, None, object_array(["a", "b", "c"]))])
    data = b.to_bytes()
    monkeypatch.setattr(tag_filter, "_hash_halves", real)
    tf = TagFilters.from_bytes(data, ["svc"], 1)
    assert tf.check_block(0, "svc", object_array(["a", "b", "c"])) is not None
    monkeypatch.setattr(tag_filter, "_hash_halves", lambda keys: real([k + b"!" for k in keys]))
    reader = _write_part(_kv_rows(200))
    monkeypatch.setattr(tag_filter, "_hash_halves", real)
    reader2 = PartReader.open(MemSource(reader.source.files), reader.name, meta=reader.meta, kinds=KINDS)  # type: ignore[attr-defined]
    with pytest.raises(CorruptPartError) as e:
        reader2.verify_all()
    assert e.value.file == names.TAG_FILTERS


def test_parts_without_the_option_read_and_match_everywhere() -> None:
    reader = _write_part(_kv_rows(200), layout=KV.layout)
    assert names.TAG_FILTERS not in reader.meta.files
    assert reader.tag_filters is None
    assert reader.blocks_may_match("svc", ["nope"]).all()
    assert reader.blocks_int_range("code") is None
    assert not reader.blocks_may_match("not-a-tag", ["x"]).any()


def test_merges_keep_summaries_for_copied_and_merged_blocks(tmp_path: Any) -> None:
    """Three flushes (some keys in one part only: raw copies; some in several: re-encoded), then
    a merge: the merged part's summaries still admit every stored value."""
    store = Store(str(tmp_path / "s"), registry=Registry(), engines=[KV_TF], background=False)
    try:
        h = store.engine("kv")
        for p in range(3):
            keys = [b"only%d-%d" % (p, i % 7) for i in range(40)]
            keys += [b"shared-%d" % (i % 3) for i in range(20)]
            tags = [{"svc": f"p{p}-{i % 4}", "n": p * 100 + i} for i in range(60)]
            h.write(kv_batch(keys, [10**18 + p * 1000 + i for i in range(60)], tags=tags))
            h.flush()
        h.merge_now()
    finally:
        store.close()
    fs = OSFileSystem()
    (tdir,) = table_dirs(fs, str(tmp_path / "s"), "kv")
    (part,) = listed_parts(fs, tdir)
    meta = read_part_meta(fs, f"{tdir}/{part}")
    assert len(meta.lineage) == 3 and names.TAG_FILTERS in meta.files
    reader = PartReader.open(DirSource(fs, f"{tdir}/{part}"), part, kinds=KINDS)
    try:
        assert reader.verify_all() > 0
        seen = 0
        for i in range(reader.meta.blocks):
            tags = reader.read_tags(i)
            for v in set(tags["svc"].tolist()):
                assert reader.block_may_match(i, "svc", v)
                seen += 1
            ns = tags["n"].tolist()
            assert reader.block_int_range(i, "n") == (min(ns), max(ns))
        assert seen > 0
        # a service written only to part 0 is ruled out for blocks of part 2's keys
        only2 = [i for i, k in enumerate(reader.blocks.keys) if k.startswith(b"only2")]
        assert not reader.blocks_may_match("svc", ["p0-1"])[only2].any()
    finally:
        reader.close()
    # bit rot in the sidecar is caught at open by its whole-file checksum
    flip_bit(fs, f"{tdir}/{part}/{names.TAG_FILTERS}", meta.files[names.TAG_FILTERS] // 2, 3)
    with pytest.raises(CorruptPartError) as e:
        PartReader.open(DirSource(fs, f"{tdir}/{part}"), part, kinds=KINDS)
    assert e.value.file == names.TAG_FILTERS and e.value.reason.value == "checksum"


def test_value_keys_fast_paths_equal_value_key() -> None:
    for vals in (["a", "", "é"], [b"", b"x"], [1, "1", b"1", True, -0.0, 0.0]):
        assert tag_filter.value_keys(vals) == [tag_filter.value_key(v) for v in vals]


def test_string_array_tags_round_trip_and_are_validated(tmp_path: Any) -> None:
    """Tuples of str are tag values (dictionary and plain alike); other items are refused."""
    store = Store(str(tmp_path / "s"), registry=Registry(), engines=[KV_TF], background=False)
    try:
        h = store.engine("kv")
        labels = [("a", "b"), (), ("é",), None, "a"]
        h.write(kv_batch([b"k"] * 5, [10**18 + i for i in range(5)], tags=[{"l": v} for v in labels]))
        h.flush()
        got = [r[3].get("l") for r in h.query()]
        assert got == labels
        with pytest.raises(InvalidInputError) as e:
            h.write(kv_batch([b"k"], [10**18], tags=[{"l": ("a", 1)}]))
        assert e.value.field == "tags.l" and e.value.row == 0
        assert [r[3].get("l") for r in h.query()] == labels
    finally:
        store.close()


def test_filter_columns_get_block_blooms_through_merges(tmp_path: Any) -> None:
    """A granule-file column named in `filter_columns` gets per-block filters like a tag, kept
    when a merge copies blocks raw; layouts naming a block-file column are refused."""
    layout = attrs.evolve(KV.layout, tag_filters=True, filter_columns=("ts",))
    engine = attrs.evolve(KV, layout=layout)
    store = Store(str(tmp_path / "s"), registry=Registry(), engines=[engine], background=False)
    try:
        h = store.engine("kv")
        for p in range(3):
            keys = [b"k%d-%d" % (p, i % 5) for i in range(50)]
            h.write(kv_batch(keys, [10**18 + p * 1000 + i for i in range(50)]))
            h.flush()
        h.merge_now()
    finally:
        store.close()
    fs = OSFileSystem()
    (tdir,) = table_dirs(fs, str(tmp_path / "s"), "kv")
    (part,) = listed_parts(fs, tdir)
    reader = PartReader.open(DirSource(fs, f"{tdir}/{part}"), part, kinds=KINDS)
    try:
        assert len(reader.meta.lineage) == 3
        assert reader.verify_all() > 0
        for i in range(reader.meta.blocks):
            for ts in reader.read_block(i, ["ts"], [])["ts"].tolist():
                assert reader.column_blocks_may_match("ts", [ts])[i]
        hits = reader.column_blocks_may_match("ts", [10**18 + 1000 + 7])
        assert 1 <= hits.sum() <= 3  # one block holds it; ~1 % false positives
        assert reader.column_blocks_may_match("value", [b"x"]).all()  # not filtered: unknown
    finally:
        reader.close()
    with pytest.raises(ValueError, match="granule file"):
        attrs.evolve(KV.layout, tag_filters=True, filter_columns=("value",))
    with pytest.raises(ValueError, match="tag_filters"):
        attrs.evolve(KV.layout, filter_columns=("ts",))
