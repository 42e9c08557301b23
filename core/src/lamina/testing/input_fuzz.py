"""Hostile input thrown at `write()` and `query()`: SPEC §10 invariants 8 and 11, checked by example.

Invariant 11 says that whatever `write()` accepts, `flush()` stores and queries return unchanged;
invariant 8 that bad input raises a clear `InvalidInputError` naming the field and disturbs
nothing. A missing check breaks both at once, and late: validation lets a value through (a lone
surrogate, which the UTF-8 encoder refuses; a 2-D array; an int no float64 holds), the value sits
in the buffer until a flush meets it in the encoder, the flush raises, the good rows buffered
with it cannot be flushed either, and every later flush and `close()` fails the same way: the
table is wedged. Hand-written cases find the holes someone thought of; this module throws
hypothesis-drawn batches (mostly edge-valid values, with hostile ones mixed in: surrogates, NUL,
huge and negative ints, bools for ints, NaN, numpy arrays of odd dtypes and shapes, nested and
foreign types, very long strings) at a real store and checks, for each:

- either `write()` raises `InvalidInputError` (naming a field), nothing buffered changed, and the
  good batch buffered before it still flushes and reads back exactly;
- or the rows are read back unchanged (canonical: value and type, floats bit for bit) from the
  buffer, after `flush()`, and after the store is reopened. A raw exception anywhere is a bug.

An engine's suite describes itself with a `FuzzSubject` (how to open it, a good batch, a model of
what it must return, a reader) and draws batches from strategies built with the helpers below;
`check_write(subject, batch)` and `check_query(subject, kwargs)` run one case and count it in
`lamina.testing.figures` (`input_*`, `query_*`), so the reliability summary reports the cases
tried, the wedged tables and the raw exceptions, which must be 0. Third-party engines reuse all of
it: see `EVERY_KIND` (an engine with one column of each kind) and its subject in core's tests.

Case counts scale with `LAMINA_TORTURE=long` (`examples()`).
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import attrs
import numpy as np
from hypothesis import strategies as st

import lamina
from lamina import API_VERSION, BlockSchema, Column, ColumnKind, Engine, FileLayout, QueryContext
from lamina.errors import InvalidInputError, LaminaError
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing import figures

__all__ = [
    "EVERY_KIND",
    "FuzzSubject",
    "canon_float",
    "canon_tag",
    "canon_tags",
    "check_query",
    "check_write",
    "column",
    "column_values",
    "core_tag_values",
    "examples",
    "hostile_arguments",
    "hostile_scalars",
    "tag_names",
    "tag_rows",
    "tags",
    "texts",
    "timestamps",
]

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
#: 2023-11-14T22:13:20Z: most drawn timestamps are near it, so a batch touches few segments.
T0 = 1_700_000_000_000_000_000


def examples(ci: int = 25, long: int = 1_000) -> int:
    """hypothesis `max_examples` for one fuzz test: modest in CI, large with LAMINA_TORTURE=long."""
    return figures.scale(ci, long)


# -- value strategies ---------------------------------------------------------------------------

#: Strings every layer must survive (valid UTF-8) and strings the UTF-8 encoder refuses (lone
#: surrogates: what `surrogateescape` makes of non-UTF-8 bytes, e.g. in file names or argv).
EDGE_TEXTS = ("", " ", "\x00", "a\x00b", "é", "\U0001f600", "%2F", "/", "..", ".", "\\", "tag.type", "\n")
SURROGATE_TEXTS = ("\ud800", "\udcff", "x\udc80y", "\U0001f600\udfff")


def texts(*, hostile: bool = True, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Strings: any code point (surrogates included when `hostile`), edge cases, and long ones.

    Without `hostile`, every string drawn is valid UTF-8 of `min_size`..`max_size` characters."""
    # codec="utf-8" leaves out the surrogates, which st.characters() may otherwise draw
    alphabet = st.characters(exclude_categories=()) if hostile else st.characters(codec="utf-8")
    edge = [t for t in EDGE_TEXTS if min_size <= len(t) <= max_size]
    out: list[st.SearchStrategy[str]] = [st.text(alphabet, min_size=min_size, max_size=max_size)]
    if edge:
        out.append(st.sampled_from(edge))
    if max_size >= 64:
        out.append(st.integers(max(min_size, 64), max_size).map(lambda n: "x" * n))
    if hostile:
        out.append(st.sampled_from(SURROGATE_TEXTS))
        out.append(st.sampled_from(["x" * 201, "y" * 257, "z" * 20_000]))
    return st.one_of(out)


def timestamps() -> st.SearchStrategy[int]:
    """Valid timestamps (ns, int64, >= 0): mostly near T0 (few segments), sometimes the extremes."""
    return st.one_of(st.integers(T0, T0 + 10**9), st.sampled_from([0, 1, T0, I64_MAX]))


def int64s() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(I64_MIN, I64_MAX), st.sampled_from([0, -1, I64_MIN, I64_MAX]))


def hostile_scalars() -> st.SearchStrategy[Any]:
    """Values of every type a caller might pass by mistake: wrong Python types, numpy scalars of
    every kind, out-of-range ints, NaN and infinities, nested containers, bare objects."""
    fixed = [
        None,
        True,
        False,
        0.5,
        -0.0,
        math.nan,
        math.inf,
        -math.inf,
        2**63,
        -(2**63) - 1,
        2**64,
        10**400,
        1j,
        Decimal("1.5"),
        Fraction(1, 3),
        "",
        "\ud800",
        b"",
        bytearray(b"ab"),
        memoryview(b"ab"),
        (),
        ("a", 1),
        ("\ud800",),
        ["a"],
        {"a": 1},
        {1, 2},
        frozenset(),
        np.int64(7),
        np.int8(-1),
        np.uint64(2**64 - 1),
        np.float32(1.5),
        np.float64(math.nan),
        np.longdouble(1.1),
        np.complex128(1j),
        np.bool_(True),
        np.str_("s"),
        np.bytes_(b"b"),
        np.datetime64(1, "ns"),
        np.timedelta64(5, "ns"),
        np.array(7),
        np.array([1, 2]),
        np.array([[1, 2]]),
        np.array(["a"]),
    ]
    return st.one_of(
        st.sampled_from(fixed),
        st.builds(object),
        st.integers(),
        st.floats(),
        st.binary(max_size=8),
        texts(),
    )


def core_tag_values(*, hostile: bool = False) -> st.SearchStrategy[Any]:
    """Tag values the core stores (str, int64, float, bytes, bool, tuple of str); with `hostile`,
    anything at all besides."""
    valid = st.one_of(
        texts(hostile=False, max_size=80),
        int64s(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.binary(max_size=16),
        st.booleans(),
        st.lists(texts(hostile=False, max_size=6), max_size=3).map(tuple),
    )
    if not hostile:
        return valid
    return st.one_of(valid, hostile_scalars(), st.lists(hostile_scalars(), max_size=2).map(tuple))


def tag_names(*, hostile: bool = False) -> st.SearchStrategy[Any]:
    """Tag names: non-empty str of at most 200 characters (file-system-hostile ones included);
    with `hostile`, empty, too long, surrogates, and non-str keys."""
    valid = st.one_of(
        texts(hostile=False, min_size=1, max_size=16),
        st.sampled_from(["a", "k8s/pod", ".hidden", "..", "%41", "tag.type", "n" * 200, "é" * 120]),
    )
    if not hostile:
        return valid
    return st.one_of(
        valid, st.sampled_from(["", "x" * 201, *SURROGATE_TEXTS, 5, None, b"a", ("a",), 1.5, True])
    )


# -- column strategies --------------------------------------------------------------------------

INT_DTYPES = ("int64", "int32", "int8", "uint8", "uint64")
FLOAT_DTYPES = ("float64", "float32", "float16", "int64", "int32", "uint64")
HOSTILE_DTYPES = ("float64", "bool", "object", "U4", "S4", "datetime64[ns]", "complex128", "longdouble")


def _as_array(values: list[Any], dtype: str) -> Any:
    """`values` as a numpy array of `dtype`, or the list itself when they do not convert."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float16 overflow, complex casts: values may change
            arr = np.array(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        return values
    return arr if arr.shape == (len(values),) else values


def column(
    n: int,
    good: st.SearchStrategy[Any],
    *,
    hostile: bool = False,
    dtypes: Sequence[str] = (),
    bad: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[Any]:
    """A column of `n` values drawn from `good`: a list, a tuple, or a 1-D numpy array of one of
    `dtypes`. With `hostile` it may instead be anything a caller could pass by mistake: a value
    from `bad` (default: `hostile_scalars()`) at some row, the wrong length, a 0-d or 2-D array,
    an array of a foreign dtype, a scalar, a str, a mapping, a set, None, an iterator."""
    goods = st.lists(good, min_size=n, max_size=n)
    valid: list[st.SearchStrategy[Any]] = [goods, goods, goods.map(tuple)]
    if dtypes:
        valid.append(st.tuples(goods, st.sampled_from(list(dtypes))).map(lambda p: _as_array(*p)))
    if not hostile:
        return st.one_of(valid)
    bad = bad if bad is not None else hostile_scalars()

    def spliced(p: tuple[list[Any], int, Any]) -> list[Any]:
        values, at, item = p
        return [*values[:at], item, *values[at + 1 :]] if values else [item]

    odd: list[st.SearchStrategy[Any]] = [
        st.tuples(goods, st.integers(0, max(n - 1, 0)), bad).map(spliced),
        st.lists(good, min_size=n + 1, max_size=n + 1),
        goods.map(lambda v: v[:-1]),
        goods.map(lambda v: np.array(v, dtype=object).reshape(1, -1) if v else np.zeros((0, 2))),
        goods.map(lambda v: np.array(v[0] if v else 0, dtype=object)),
        st.tuples(goods, st.sampled_from(HOSTILE_DTYPES)).map(lambda p: _as_array(*p)),
        st.tuples(goods, st.sampled_from(list(INT_DTYPES))).map(
            lambda p: np.zeros((len(p[0]), 2), dtype=p[1]) if p[0] else np.zeros((1, 1), dtype=p[1])
        ),
        goods.map(lambda v: iter(v)),
        goods.map(lambda v: {i: x for i, x in enumerate(v)}),
        goods.map(lambda v: set(map(repr, v))),
        bad,
    ]
    return st.one_of(*valid, *odd)


def tags(
    n: int,
    values: st.SearchStrategy[Any],
    *,
    hostile: bool = False,
    names: st.SearchStrategy[Any] | None = None,
    exclude: Iterable[str] = (),
) -> st.SearchStrategy[Any]:
    """A tags column of `n` rows: one mapping per row, or a mapping of tag -> column (None =
    absent), with names from `names` (a few per batch, shared by the rows) and values from
    `values`. With `hostile`, names and values may be anything and the column malformed.
    `exclude`: names a valid column must not use (e.g. an engine's entity tags)."""
    skip = frozenset(exclude)
    names = names if names is not None else tag_names(hostile=hostile)
    if not hostile:
        names = names.filter(lambda t: t not in skip)
    pool = st.lists(names, max_size=4, unique_by=lambda t: (type(t), t))
    maybe = st.one_of(st.none(), values)

    @st.composite
    def row_form(draw: Any) -> list[dict[Any, Any]]:
        ns = draw(pool)
        rows = []
        for _ in range(n):
            row = {}
            for t in ns:
                v = draw(maybe)
                if v is not None or draw(st.booleans()):  # None given: an explicitly absent tag
                    row[t] = v
            rows.append(row)
        return rows

    @st.composite
    def column_form(draw: Any) -> dict[Any, Any]:
        ns = draw(pool)
        return {t: draw(column(n, maybe, hostile=hostile)) for t in ns}

    valid = [row_form(), row_form(), column_form()]
    if not hostile:
        return st.one_of(valid)
    return st.one_of(
        *valid,
        st.lists(st.one_of(st.none(), st.text(max_size=3), st.integers()), min_size=n, max_size=n),
        st.lists(st.dictionaries(st.text(max_size=2), values, max_size=2), min_size=n + 1, max_size=n + 1),
        st.sampled_from([None, 5, "a=b", b"", {"a": 5}, {"a": "xyz"}, {5: [1] * n}]),
    )


def hostile_arguments() -> st.SearchStrategy[Any]:
    """What a query argument may be by mistake: any scalar, a list or mapping of them."""
    return st.one_of(
        hostile_scalars(),
        st.lists(hostile_scalars(), max_size=3),
        st.dictionaries(st.one_of(texts(), st.integers()), hostile_scalars(), max_size=2),
    )


# -- reading batches as the model sees them -----------------------------------------------------


def column_values(batch: Mapping[str, Any], name: str, n: int | None = None) -> list[Any]:
    """The values of an accepted column as a list (a missing column: `n` Nones)."""
    if name not in batch:
        return [None] * (n or 0)
    v = batch[name]
    return v.tolist() if isinstance(v, np.ndarray) else list(v)


def tag_rows(value: Any, n: int) -> list[dict[str, Any]]:
    """An accepted tags column (row or column form, or absent) as one dict per row, absent tags
    left out."""
    if value is None:
        return [{} for _ in range(n)]
    if isinstance(value, Mapping):
        cols = {t: list(c) for t, c in value.items()}
        return [{t: c[i] for t, c in cols.items() if c[i] is not None} for i in range(n)]
    return [{t: v for t, v in r.items() if v is not None} for r in value]


def canon_float(v: Any) -> tuple[str, bytes]:
    """A float by its bits: -0.0 and 0.0 differ, NaN equals itself (same payload)."""
    return ("float", struct.pack("<d", float(v)))


def canon_tag(v: Any) -> tuple[str, Any]:
    """A tag value with its exact type: 1, 1.0, True and "1" all differ, as stored tags do."""
    if type(v) is float:
        return canon_float(v)
    if type(v) is tuple:
        return ("tuple", tuple(canon_tag(x) for x in v))
    return (type(v).__name__, v)


def canon_tags(d: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((t, canon_tag(v)) for t, v in d.items() if v is not None))


def _ordered(rows: Iterable[Any]) -> list[Any]:
    return sorted(rows, key=repr)


# -- subjects and cases -------------------------------------------------------------------------


@attrs.frozen
class FuzzSubject:
    """One engine under fuzz.

    `expect(batches)` is the model: the canonical rows (any order) the engine must return after
    `batches` were all accepted, in order (apply the engine's equal-key rule there); `read(handle)`
    the canonical rows a full query returns. `setup(handle)` runs on every fresh store (define a
    dataset, say); `good` is a batch the engine must accept, buffered before each hostile one."""

    name: str
    engine: Engine
    good: Mapping[str, Any]
    expect: Callable[[list[Mapping[str, Any]]], list[Any]]
    read: Callable[[lamina.EngineHandle], list[Any]]
    setup: Callable[[lamina.EngineHandle], None] | None = None
    dataset: str = "default"

    def open(self, fs: SimFS | None = None) -> tuple[lamina.Store, lamina.EngineHandle]:
        """A store holding only this engine, on `fs` (default: a fresh SimFS), no background."""
        store = lamina.Store(
            "/store", fs=fs or SimFS(), registry=Registry(), engines=[self.engine], background=False
        )
        handle = store.engine(self.engine.name)
        if self.setup is not None:
            self.setup(handle)
        return store, handle


def _count(subject: FuzzSubject, prefix: str, **outcome: int) -> None:
    figures.add(**{f"{prefix}_cases": 1, f"{prefix}_cases.{subject.name}": 1}, **outcome)


def _pending(handle: lamina.EngineHandle) -> int:
    return sum(t.pending_rows for t in handle.tables())


def _read(subject: FuzzSubject, handle: lamina.EngineHandle, when: str, want: list[Any], batch: Any) -> None:
    try:
        got = _ordered(subject.read(handle))
    except LaminaError as e:
        figures.add(input_wedged=1)
        raise AssertionError(
            f"{subject.name}: query {when} failed after write accepted {batch!r}: {e}"
        ) from e
    except Exception as e:
        figures.add(input_wedged=1, input_raw=1)
        raise AssertionError(f"{subject.name}: query {when} raised {e!r} for {batch!r}") from e
    assert got == want, f"{subject.name}: rows read {when} differ from rows written ({batch!r})"


def check_write(subject: FuzzSubject, batch: Any) -> str:
    """One hostile batch, after a good one is buffered: refused cleanly, or stored unchanged.

    Returns "refused" or "stored"; raises AssertionError (after counting it) on a raw exception,
    a wedged table, a refusal that changed the buffer, or rows that came back different."""
    fs = SimFS()
    store, handle = subject.open(fs)
    kw = {"dataset": subject.dataset}
    try:
        handle.write(subject.good, **kw)
        before = _pending(handle)
        try:
            handle.write(batch, **kw)
        except InvalidInputError as e:
            outcome, written = "refused", [subject.good]
            assert isinstance(e.field, str) and e.field, f"{subject.name}: error names no field: {e}"
            assert _pending(handle) == before, f"{subject.name}: a refused batch changed the buffer: {e}"
        except LaminaError as e:
            raise AssertionError(
                f"{subject.name}: expected InvalidInputError for {batch!r}, got {e!r}"
            ) from e
        except Exception as e:
            figures.add(input_raw=1)
            raise AssertionError(f"{subject.name}: write() raised {e!r} for {batch!r}") from e
        else:
            outcome, written = "stored", [subject.good, batch]
        want = _ordered(subject.expect(written))
        _read(subject, handle, "before flush", want, batch)
        try:
            handle.flush()
        except Exception as e:
            figures.add(input_wedged=1, input_raw=int(not isinstance(e, LaminaError)))
            raise AssertionError(f"{subject.name}: flush failed after write accepted {batch!r}: {e!r}") from e
        _read(subject, handle, "after flush", want, batch)
        store.close()
        store, handle = subject.open(fs)
        _read(subject, handle, "after reopen", want, batch)
    finally:
        store.close()
    _count(subject, "input", **{f"input_{outcome}": 1, "input_wedged": 0, "input_raw": 0})
    return outcome


def check_query(subject: FuzzSubject, kwargs: Mapping[str, Any]) -> str:
    """One query with drawn arguments over flushed and buffered rows: an answer or an
    `InvalidInputError` naming an argument, never a raw exception. Returns "answered" or
    "refused"."""
    store, handle = subject.open()
    try:
        handle.write(subject.good, dataset=subject.dataset)
        handle.flush()
        handle.write(subject.good, dataset=subject.dataset)
        args = {"dataset": subject.dataset, **kwargs}
        try:
            handle.query(**args)
        except InvalidInputError as e:
            assert isinstance(e.field, str) and e.field, f"{subject.name}: error names no argument: {e}"
            outcome = "refused"
        except LaminaError as e:
            raise AssertionError(f"{subject.name}: expected InvalidInputError for {args!r}, got {e!r}") from e
        except Exception as e:
            figures.add(query_raw=1)
            raise AssertionError(f"{subject.name}: query({args!r}) raised {e!r}") from e
        else:
            outcome = "answered"
    finally:
        store.close()
    _count(subject, "query", **{f"query_{outcome}": 1, "query_raw": 0})
    return outcome


# -- an engine with one column of every kind ----------------------------------------------------

EVERY_KIND_SCHEMA = BlockSchema(
    columns=(
        Column("key", ColumnKind.BYTES),
        Column("ts", ColumnKind.INT64),
        Column("n", ColumnKind.INT64),
        Column("f", ColumnKind.FLOAT64),
        Column("s", ColumnKind.STRING),
        Column("b", ColumnKind.BYTES),
        Column("tags", ColumnKind.TAGS),
    ),
    block_key="key",
    sort_key=("key", "ts"),
    timestamp="ts",
)
EVERY_KIND_LAYOUT = FileLayout(
    files=(("rows.bin", ("key", "n", "f", "s", "b")), ("ts.bin", ("ts",))),
    key_filter="key.filter",
    granule_files=("ts.bin",),
    tag_filters=True,  # the per-block tag summaries hash every tag value: their encoder runs too
)


def _every_kind_scan(ctx: QueryContext) -> list[dict[str, Any]]:
    """Every row, one dict per row (tags: present ones only)."""
    out = []
    for part in ctx.parts():
        for i in range(len(part.blocks.keys)):
            r = part.read_block(i)
            tag_cols = r.get("tags", {})
            for j in range(len(r["key"])):
                row = {c: r[c][j] for c in ("key", "ts", "n", "f", "s", "b")}
                row["tags"] = {t: c[j] for t, c in tag_cols.items() if c[j] is not None}
                out.append(row)
    return out


def _every_kind_normalize(batch: Any) -> Any:
    return batch


#: An engine with one column of each kind (BYTES key, INT64, FLOAT64, STRING, BYTES, TAGS) and
#: tag summaries on: the core's validation of every column kind, fuzzed without any plugin.
EVERY_KIND = Engine(
    name="kinds",
    api_version=API_VERSION,
    schema=EVERY_KIND_SCHEMA,
    layout=EVERY_KIND_LAYOUT,
    normalize=_every_kind_normalize,
    query=_every_kind_scan,
    description="one column of each kind, for input fuzzing",
)
