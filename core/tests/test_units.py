"""Unit tests of small core modules: merge policy, records, names, block cutting."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from lamina import names
from lamina.engine import MergePolicyParams
from lamina.format.part_meta import Manifest
from lamina.format.part_writer import block_bounds, key_of
from lamina.format.records import RecordError, dump_record, load_record
from lamina.merge.policy import select_parts
from lamina.testing.kv import SCHEMA


@attrs.frozen
class P:
    part_id: int
    size: int
    created_ns: int = 0


# -- merge policy -------------------------------------------------------------------------------
def test_policy_waits_for_enough_similar_parts() -> None:
    params = MergePolicyParams(max_parts=8, min_multiplier=1.7)
    assert select_parts([P(i, 100) for i in range(3)], params) == []  # m = 3 < max_parts / 2
    assert select_parts([P(i, 100) for i in range(4)], params) == [0, 1, 2, 3]


def test_policy_never_drags_a_small_part_into_a_big_rewrite() -> None:
    params = MergePolicyParams(max_parts=4, min_multiplier=1.5)
    parts = [P(1, 10_000), P(2, 10), P(3, 10), P(4, 10), P(5, 10)]
    assert select_parts(parts, params) == [2, 3, 4, 5]


def test_policy_respects_the_output_size_limit() -> None:
    params = MergePolicyParams(max_parts=4, min_multiplier=1.5, max_output_bytes=250)
    assert select_parts([P(i, 100) for i in range(4)], params) == [0, 1]  # 200 fits, 300 would not
    params = MergePolicyParams(max_parts=4, min_multiplier=1.5, max_output_bytes=150)
    assert select_parts([P(i, 100) for i in range(4)], params) == []


def test_policy_bounds_fan_in_to_max_parts() -> None:
    params = MergePolicyParams(max_parts=4, min_multiplier=1.5)
    assert len(select_parts([P(i, 100) for i in range(20)], params)) == 4


# -- records --------------------------------------------------------------------------------------
M = Manifest(format_version=1, epoch=3, parts=[1, 2], created_ns=5)


def test_record_round_trip_puts_format_version_first() -> None:
    data = dump_record(M)
    assert next(iter(json.loads(data))) == "format_version"
    assert load_record(data, Manifest, (1,)) == M


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda b: b.update(epoch="3"), "checksum"),  # any edit breaks the body checksum first
        (lambda b: b.update(format_version=9), "format_version 9 is not supported"),
        (lambda b: b.pop("body_crc32c"), "body_crc32c missing"),
    ],
)
def test_record_errors_name_the_problem(edit, needle: str) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(dump_record(M))
    edit(body)
    with pytest.raises(RecordError, match=needle):
        load_record(json.dumps(body).encode(), Manifest, (1,))


def test_strict_converter_refuses_strings_for_ints_and_extra_keys() -> None:
    from lamina.format.checksum import crc32c
    from lamina.format.records import CHECKSUM_KEY, _canonical

    for body in (
        {"format_version": 1, "epoch": "3", "parts": [], "created_ns": 1},
        {"format_version": 1, "epoch": 3, "parts": [], "created_ns": 1, "extra": 1},
        {"format_version": 1, "epoch": True, "parts": [], "created_ns": 1},
    ):
        body[CHECKSUM_KEY] = crc32c(_canonical(body))  # a well-checksummed but ill-typed record
        with pytest.raises(RecordError):
            load_record(json.dumps(body).encode(), Manifest, (1,))


def test_garbage_is_a_record_error_not_a_crash() -> None:
    for data in (b"", b"{", b"[]", b"\xff\xfe", b'{"format_version": "1"}'):
        with pytest.raises(RecordError):
            load_record(data, Manifest, (1,))


# -- names ----------------------------------------------------------------------------------------
def test_part_and_manifest_names_round_trip() -> None:
    assert names.parse_part_name(names.part_name(255)) == 255
    assert names.parse_manifest_name(names.manifest_name(7)) == 7
    assert names.parse_part_name("00000000000000fg") is None
    assert names.parse_manifest_name("0000000000000007.snp.tmp") is None


@pytest.mark.parametrize(
    "name",
    [
        "0000000000000001\n",
        "0000000000000001.snp\n",
        "0000000000000001.intent\n",
        "seg-20231114\n",
        "seg-2023111\u0664",
        "shard-0\n",
        "shard-\u0660",
    ],
)
def test_no_name_parser_accepts_a_trailing_newline_or_a_non_ascii_digit(name: str) -> None:
    """`$` matches before a trailing newline and `\\d` matches any Unicode digit: a directory
    named "0000000000000001\\n" was taken for part 1 (found by the input review)."""
    parsers = (
        names.parse_part_name,
        names.parse_manifest_name,
        names.parse_intent_name,
        names.parse_segment_name,
        names.parse_shard_name,
    )
    assert all(parse(name) is None for parse in parsers)


def test_segment_names_round_trip_for_day_and_hour_intervals() -> None:
    day, hour = 86_400 * 10**9, 3600 * 10**9
    t = 1_764_028_800 * 10**9  # 2025-11-25T00:00Z
    assert names.segment_name(t, day) == "seg-20251125"
    assert names.parse_segment_name("seg-20251125") == t
    assert names.parse_segment_name(names.segment_name(t + 5 * hour, hour)) == t + 5 * hour


def test_tag_file_names_are_safe_distinct_and_bounded() -> None:
    tags = ["service", "k8s/pod", ".hidden", "..", "a%2Fb", "é", "x" * 300, "/" * 200]
    stems = [names.tag_file_stem(t) for t in tags]
    assert len(set(stems)) == len(stems)
    assert all("/" not in s and not s.startswith(".") and len(s) <= 120 for s in stems)


# -- block cutting --------------------------------------------------------------------------------
def test_blocks_cut_at_key_changes_and_at_the_byte_limit() -> None:
    schema = attrs.evolve(SCHEMA, block_max_bytes=100)
    keys = [b"a"] * 5 + [b"b"] * 3
    sizes = np.array([40, 40, 40, 40, 40, 10, 10, 10])
    assert block_bounds(schema, keys, sizes) == [(0, 2), (2, 4), (4, 5), (5, 8)]


def test_a_row_larger_than_the_limit_gets_its_own_block() -> None:
    schema = attrs.evolve(SCHEMA, block_max_bytes=100, block_max_rows=2)
    keys = [b"a"] * 4
    assert block_bounds(schema, keys, np.array([500, 1, 1, 1])) == [(0, 1), (1, 3), (3, 4)]


def test_int_block_keys_sort_like_integers() -> None:
    from lamina import BlockSchema, Column, ColumnKind

    s = BlockSchema(
        columns=(Column("series", ColumnKind.INT64), Column("ts", ColumnKind.INT64)),
        block_key="series",
        sort_key=("series", "ts"),
        timestamp="ts",
    )
    vals = [-(2**63), -5, -1, 0, 1, 7, 2**63 - 1]
    assert sorted(vals, key=lambda v: key_of(s, v)) == vals


def test_rows_to_batch_leaves_out_a_column_no_row_has_and_names_a_row_lacking_one() -> None:
    from lamina.batch import rows_to_batch
    from lamina.errors import InvalidInputError
    from lamina.testing.kv import SCHEMA

    batch = rows_to_batch(SCHEMA, [{"key": b"a", "ts": 1}, {"key": b"b", "ts": 2}])
    assert set(batch) == {"key", "ts", "tags"}  # "value" is for the engine (or the check) to fill
    with pytest.raises(InvalidInputError) as e:
        rows_to_batch(SCHEMA, [{"key": b"a", "ts": 1, "value": b"x"}, {"key": b"b", "ts": 2}])
    assert (e.value.field, e.value.row) == ("value", 1)
    with pytest.raises(InvalidInputError) as e:
        rows_to_batch(SCHEMA, [{"key": b"a", "ts": 1}, {"key": b"b", "ts": 2, "value": b"x"}])
    assert (e.value.field, e.value.row) == ("value", 0)
