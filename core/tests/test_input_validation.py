"""Regressions of the input-validation review: input that `write()` accepted and every later
`flush()` refused (wedging the table with the good rows buffered beside it), raw exceptions where
`InvalidInputError` is due, silently empty answers to malformed queries, and unbounded tag names.

Each test states the rule; `lamina.testing.input_fuzz` (test_input_fuzz.py) hunts for the class."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest

import lamina
from lamina import names
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.query import check_order
from lamina.testing.input_fuzz import EVERY_KIND
from lamina.testing.kv import KV

T0 = 1_700_000_000_000_000_000
GOOD = {"key": [b"good"], "ts": [T0], "value": [b"g"], "tags": [{"svc": "web"}]}


def _open(*engines: lamina.Engine, fs: SimFS | None = None) -> lamina.Store:
    return lamina.Store(
        "/store", fs=fs or SimFS(), registry=Registry(), engines=list(engines or [KV]), background=False
    )


@pytest.fixture
def kv() -> Any:
    store = _open(KV, EVERY_KIND)
    yield store.engine("kv")
    store.close()


def _kv(**cols: Any) -> dict[str, Any]:
    return {"key": [b"k"], "ts": [T0 + 1], "value": [b"v"], "tags": [{}], **cols}


def _refused(handle: lamina.EngineHandle, batch: Any, field: str) -> lamina.InvalidInputError:
    """`batch` is refused naming `field`, and the good rows buffered before it still flush."""
    handle.write(GOOD)
    pending = sum(t.pending_rows for t in handle.tables())
    with pytest.raises(lamina.InvalidInputError) as e:
        handle.write(batch)
    assert e.value.field == field, e.value
    assert field in str(e.value)
    assert sum(t.pending_rows for t in handle.tables()) == pending
    handle.flush()  # the table is not wedged
    return e.value


# -- 1. what the encoder cannot store is refused before buffering -------------------------------


@pytest.mark.parametrize(
    ("tags", "field", "row"),
    [
        ([{}, {"svc": "\ud800"}], "tags.svc", 1),
        ([{"\udcff": "x"}, {}], "tags", 0),
        ([{}, {"labels": ("ok", "x\udc80")}], "tags.labels", 1),
        ({"svc": ["a", "\ud800"]}, "tags.svc", 1),
        ({"\ud800": ["a", "b"]}, "tags", None),
    ],
    ids=["value", "name", "string-array-item", "column-form-value", "column-form-name"],
)
def test_a_lone_surrogate_in_tags_is_refused_naming_the_tag_and_row(kv, tags, field, row) -> None:
    batch = _kv(key=[b"k", b"k"], ts=[T0, T0], value=[b"1", b"2"], tags=tags)
    err = _refused(kv, batch, field)
    assert err.row == row
    assert "UTF-8" in err.problem
    assert [r[0] for r in kv.query()] == [b"good"]


def test_a_lone_surrogate_in_a_string_column_is_refused_naming_the_row(kv) -> None:
    kinds = kv.store.engine("kinds")
    good = {"key": [b"g"], "ts": [T0], "n": [1], "f": [1.0], "s": ["ok"], "b": [b""], "tags": [{}]}
    kinds.write(good)
    bad = {**good, "key": [b"a", b"b"], "ts": [T0, T0], "n": [1, 2], "f": [1.0, 2.0], "b": [b"", b""]}
    with pytest.raises(lamina.InvalidInputError) as e:
        kinds.write({**bad, "s": ["fine", "surrogate\udcfe"], "tags": [{}, {}]})
    assert (e.value.field, e.value.row) == ("s", 1)
    kinds.flush()
    assert [r["s"] for r in kinds.query()] == ["ok"]


@pytest.mark.parametrize(
    ("ts", "problem"),
    [
        (np.array([[T0], [T0]]), "1-D"),
        (np.array(T0), "0-d"),
        (np.zeros((2, 2), dtype=np.int64), "1-D"),
    ],
    ids=["2-D", "0-d", "2x2"],
)
def test_an_int_column_that_is_not_a_1d_array_is_refused(kv, ts, problem) -> None:
    err = _refused(kv, _kv(ts=ts), "ts")
    assert problem in err.problem


@pytest.mark.parametrize(
    ("f", "row"),
    [([1.0, 2**53 + 1], 1), ([10**400, 1.0], 0), (np.array([1 + 2j, 0]), None), ([1.0, 1j], 1)],
    ids=["inexact-int", "int-beyond-float", "complex-array", "complex-item"],
)
def test_a_float_column_refuses_what_float64_cannot_hold_exactly(kv, f, row) -> None:
    kinds = kv.store.engine("kinds")
    batch = {
        "key": [b"a", b"b"],
        "ts": [T0, T0],
        "n": [1, 2],
        "f": f,
        "s": ["", ""],
        "b": [b"", b""],
        "tags": [{}, {}],
    }
    with pytest.raises(lamina.InvalidInputError) as e:
        kinds.write(batch)
    assert (e.value.field, e.value.row) == ("f", row)


def test_float_columns_keep_nan_signed_zero_and_exact_ints_bit_for_bit(kv) -> None:
    kinds = kv.store.engine("kinds")
    fs = [float("nan"), -0.0, 2**53, -(2**60), float("-inf")]
    n = len(fs)
    kinds.write(
        {
            "key": [b"k%d" % i for i in range(n)],
            "ts": [T0] * n,
            "n": list(range(n)),
            "f": fs,
            "s": [""] * n,
            "b": [b""] * n,
            "tags": [{}] * n,
        }
    )
    kinds.flush()
    got = [r["f"] for r in sorted(kinds.query(), key=lambda r: r["key"])]
    assert np.array(got).tobytes() == np.array(fs, dtype=np.float64).tobytes()


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({5: ["x"]}, "tags"),
        ({"svc": "x"}, "tags.svc"),
        ({"svc": 5}, "tags.svc"),
        (None, "tags"),
        (5, "tags"),
        ([None], "tags"),
    ],
    ids=["int-name", "str-column", "scalar-column", "none", "int", "none-row"],
)
def test_a_malformed_tags_column_is_refused_never_coerced(kv, tags, field) -> None:
    _refused(kv, _kv(tags=tags), field)
    assert kv.query()[0][3] == {"svc": "web"}


# -- 2. raw exceptions and silent answers ------------------------------------------------------


@pytest.mark.parametrize("dataset", [5, None, b"default", "abc\n", "../../x", "", "a/b", "\ud800"])
def test_an_invalid_dataset_is_refused_on_write_write_rows_query_and_define(kv, dataset) -> None:
    for call in (
        lambda: kv.write(_kv(), dataset=dataset),
        lambda: kv.write_rows([{"key": b"k", "ts": T0, "value": b"v"}], dataset=dataset),
        lambda: kv.query(dataset=dataset),
        lambda: kv.store.engine("kinds").query(dataset=dataset),
        lambda: kv.schema(dataset),
        lambda: kv.options(dataset),  # "../../x" used to read outside the store
    ):
        with pytest.raises(lamina.InvalidInputError) as e:
            call()
        assert e.value.field == "dataset"
    assert kv.tables() == []


def test_dataset_names_ending_in_a_newline_are_not_valid() -> None:
    assert names.valid_dataset("default")
    assert not names.valid_dataset("default\n")
    assert not names.valid_dataset(5)  # type: ignore[arg-type]


def test_write_rows_refuses_non_rows_and_non_str_columns_by_name(kv) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        kv.write_rows(5)  # type: ignore[arg-type]
    assert e.value.field == "rows"
    with pytest.raises(lamina.InvalidInputError) as e:
        kv.write_rows([{"key": b"k", "ts": T0, "value": b"v"}, {5: 1, "key": b"k", "ts": T0, "value": b"v"}])
    assert (e.value.field, e.value.row) == ("batch", 1)
    assert "unknown column 5" in str(e.value)
    with pytest.raises(lamina.InvalidInputError) as e:
        kv.write({**_kv(), "": [1]})
    assert e.value.field == "batch"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"start": "x"}, "start"), ({"end": 1.5}, "end"), ({"start": np.int64(5)}, "start")],
)
def test_kv_query_bounds_are_checked(kv, kwargs, field) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        kv.query(**kwargs)
    assert e.value.field == field


@pytest.mark.parametrize("order", [np.array(["asc", "desc"]), np.array(["asc"]), b"asc", ["asc"]])
def test_an_order_that_is_not_a_str_is_refused_not_compared_elementwise(order) -> None:
    with pytest.raises(lamina.InvalidInputError) as e:
        check_order(order, engine="kv")
    assert e.value.field == "order"


# -- 3. a bounded number of tag names per table -------------------------------------------------


def _tagged(n_names: int, *, prefix: str = "t", rows: int = 1) -> dict[str, Any]:
    tags = [{f"{prefix}{i}": i for i in range(n_names)}] * rows
    return _kv(key=[b"k"] * rows, ts=[T0] * rows, value=[b"v"] * rows, tags=tags)


def test_a_batch_with_more_tag_names_than_the_limit_is_refused_naming_limit_and_remedy(kv) -> None:
    limit = KV.max_tag_names
    assert limit == 1024
    err = _refused(kv, _tagged(limit + 1), "tags")
    assert f"more than {limit:,} distinct tag names" in err.problem and f"at most {limit:,}" in err.problem
    assert "max_tag_names" in err.problem
    assert [r[0] for r in kv.query()] == [b"good"]


def test_a_column_form_batch_over_the_limit_is_refused_before_its_names_are_checked(kv) -> None:
    tags = {f"t{i}": [i] for i in range(KV.max_tag_names)} | {5: ["not even a str name"]}
    err = _refused(kv, _kv(tags=tags), "tags")
    assert "more than 1,024 distinct tag names" in err.problem


def test_the_tag_name_limit_counts_what_the_table_already_holds(kv) -> None:
    kv.write(_tagged(1000))
    kv.flush()  # 1000 names (+ "svc" below) in a live part
    kv.write(_tagged(20, prefix="u"))  # 1,020 with the part's, plus the buffer's 20
    err = _refused(kv, _tagged(5, prefix="v"), "tags")  # 1 ("svc") + 1000 + 20 + 5 > 1024
    assert "would hold 1,026 distinct tag names (5 of them new" in err.problem
    kv.write(_tagged(1000))  # names the table already holds are always accepted
    kv.write(_tagged(3, prefix="w"))  # exactly at the limit
    kv.flush()
    assert len(kv.tables()[0].live_parts[-1].reader.meta.tags) <= 1024


def test_the_tag_name_limit_is_an_engine_option() -> None:
    store = _open(attrs.evolve(KV, max_tag_names=8), attrs.evolve(EVERY_KIND, max_tag_names=1100))
    try:
        tight, roomy = store.engine("kv"), store.engine("kinds")
        tight.write(_tagged(8))
        with pytest.raises(lamina.InvalidInputError, match="at most 8"):
            tight.write(_tagged(1, prefix="more"))
        n = 1050
        roomy.write(
            {
                "key": [b"k"],
                "ts": [T0],
                "n": [1],
                "f": [1.0],
                "s": [""],
                "b": [b""],
                "tags": [{f"t{i}": i for i in range(n)}],
            }
        )
        roomy.flush()
        assert len(roomy.tables()[0].live_parts[0].reader.meta.tags) == n
    finally:
        store.close()
    with pytest.raises(ValueError, match="max_tag_names"):
        attrs.evolve(KV, max_tag_names=0)


def test_the_tag_name_limit_is_per_table_so_other_segments_start_afresh(kv) -> None:
    kv.write(_tagged(1024))
    day = 86_400 * 10**9
    kv.write({**_tagged(1024, prefix="x"), "ts": [T0 + day]})
    assert len(kv.tables()) == 2
