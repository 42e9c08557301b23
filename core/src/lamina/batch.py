"""Turning what callers pass to `write()` into validated columns, with errors that name the field.

Strict on purpose, and exactly as strict as the encoders: whatever is accepted here must encode at
flush time (SPEC §10, invariant 11). A value the part writer cannot encode would sit in the buffer
until a flush met it; that flush, every later one and `close()` would then fail, with the good
rows buffered beside it: the table would be wedged. So what the format needs is checked here,
before anything is buffered, and refused with an `InvalidInputError` naming the column and row:

- every column is a 1-D sequence (a list, tuple, 1-D array...) of the batch's length, never a
  scalar, str, bytes, mapping, set, iterator, or 0-d / 2-D array (the encoders take 1-D arrays);
- int64 columns hold ints (Python or numpy integers, not bools) within int64;
- float64 columns hold floats, or ints that float64 holds exactly: an int it would round (above
  2**53) or overflow would not read back as written; complex numbers are refused, not truncated;
- bytes columns hold `bytes`; string columns `str` that encode as UTF-8, which a lone surrogate
  (what `errors="surrogateescape"` makes of non-UTF-8 bytes) does not;
- tags: names are non-empty `str` of at most 200 characters that encode as UTF-8 (never coerced:
  an int name is refused, not renamed "5"); values are str (UTF-8), int64, float, bytes, bool,
  or a tuple of UTF-8 str (a string array); None is an absent tag;
- timestamps are non-negative.

A table also holds at most `Engine.max_tag_names` distinct tag names (`check_tag_name_limit`):
each name costs two files per part plus a dictionary, per flush and per merge, so an unbounded
number turns one flush into minutes and gigabytes (8,000 names took 18.6 s and 1.56 GB).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.errors import InvalidInputError
from lamina.format.rows import Rows, object_array
from lamina.format.tags import _TYPE_OF
from lamina.schema import BlockSchema, ColumnKind

if TYPE_CHECKING:
    from lamina.table import Table

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
#: Every int of magnitude up to 2**53 is a float64 exactly; above, only some are.
_F64_EXACT = 2**53
#: Longest tag name: its file stem (names.tag_file_stem) stays far below file-name limits.
MAX_TAG_NAME = 200
_NOT_SEQUENCES = (str, bytes, bytearray, memoryview, Mapping, set, frozenset)


# -- text ---------------------------------------------------------------------------------------


def utf8_problem(text: str) -> str | None:
    """Why `text` cannot be stored (every string of the format is UTF-8), or None if it can.

    Python strings can hold lone surrogates (U+D800-U+DFFF), which UTF-8 cannot encode: they are
    what `errors="surrogateescape"` makes of bytes that were not UTF-8 (file names, argv)."""
    try:
        text.encode()
    except UnicodeEncodeError as e:
        return (
            f"is not valid UTF-8: lone surrogate {text[e.start]!r} at index {e.start} (text decoded "
            "with errors='surrogateescape'? store such data as bytes, or decode with errors='replace')"
        )
    return None


def first_non_utf8(texts: list[str]) -> int | None:
    """Index of the first of `texts` (all str) that is not valid UTF-8; None when all are.

    One C-level encode of the joined strings when all are valid (the common case): joining
    cannot mend a lone surrogate, Python's UTF-8 codec refuses every surrogate code point."""
    try:
        "".join(texts).encode()
    except UnicodeEncodeError:
        return next(i for i, s in enumerate(texts) if utf8_problem(s) is not None)
    return None


def check_text(field: str, text: str, *, engine: str = "", row: int | None = None) -> str:
    """`text` if it is valid UTF-8; else `InvalidInputError` naming `field` (and `row`)."""
    problem = utf8_problem(text)
    if problem is not None:
        raise InvalidInputError(field, f"{text!r} {problem}", engine=engine, row=row)
    return text


# -- columns ------------------------------------------------------------------------------------


def is_sequence(value: Any) -> bool:
    """Whether `value` can be a column: a 1-D array, or a sized sequence that is not text, bytes,
    a mapping or a set (engines' normalize use it to leave other values to the core's check)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return hasattr(value, "__len__") and hasattr(value, "__iter__") and not isinstance(value, _NOT_SEQUENCES)


def column_values(name: str, value: Any, engine: str = "") -> np.ndarray | list[Any]:
    """A column as given: a 1-D array as is, any other sequence as a list; else `InvalidInputError`
    naming the column (a 0-d or 2-D array would reach the encoders, which take 1-D arrays)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise InvalidInputError(
                name,
                f"expected a 1-D sequence of values, got a {value.ndim}-d array of shape {value.shape}",
                engine=engine,
            )
        return value
    if not is_sequence(value):
        raise InvalidInputError(
            name, f"expected a sequence of values, got {type(value).__name__}", engine=engine
        )
    try:
        return list(value)
    except TypeError as e:
        raise InvalidInputError(
            name, f"expected a sequence of values, got {type(value).__name__} ({e})", engine=engine
        ) from None


def unknown_column(
    key: Any, columns: Iterable[str], engine: str = "", row: int | None = None
) -> InvalidInputError:
    """The error for a batch key that is no column: named by the key itself when it can be a
    field name (a non-empty str), else as `batch` with the key's repr."""
    field = key if type(key) is str and key else "batch"
    what = "unknown column" if field == key else f"unknown column {key!r}"
    return InvalidInputError(field, f"{what} (columns: {', '.join(columns)})", engine=engine, row=row)


def rows_to_batch(
    schema: BlockSchema, rows: Iterable[Mapping[str, Any]], engine: str = ""
) -> dict[str, list[Any]]:
    """Row convenience: a list of dicts -> a columnar batch.

    A column no row has is left out of the batch (the engine's normalize may derive it, e.g. a
    measure's series ID; otherwise the batch check names it); one that only some rows lack is an
    error naming the first such row."""
    if isinstance(rows, _NOT_SEQUENCES) or not hasattr(rows, "__iter__"):
        raise InvalidInputError(
            "rows", f"expected a sequence of mappings, got {type(rows).__name__}", engine=engine
        )
    names = [c.name for c in schema.columns]
    out: dict[str, list[Any]] = {n: [] for n in names}
    tags = schema.tags_column
    absent: set[str] | None = None  # columns every row so far lacks
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInputError(
                "row", f"expected a mapping, got {type(row).__name__}", engine=engine, row=i
            )
        extra = [k for k in row if k not in names]
        if extra:
            raise unknown_column(min(extra, key=repr), names, engine, row=i)
        lacking = {n for n in names if n != tags and n not in row}
        if absent is None:
            absent = lacking
        elif lacking != absent:
            n = sorted(lacking ^ absent)[0]
            raise InvalidInputError(n, "missing", engine=engine, row=i if n in lacking else 0)
        for n in names:
            if n == tags:
                out[n].append(row.get(n) or {})
            elif n in row:
                out[n].append(row[n])
    for n in absent or ():
        del out[n]
    return out


def _int_column(name: str, values: Any, engine: str) -> np.ndarray:
    values = column_values(name, values, engine)
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iu":
            if values.dtype.kind == "u" and values.size and values.max() > _I64_MAX:
                i = int(np.argmax(values > _I64_MAX))
                raise InvalidInputError(name, f"{values[i]} does not fit in int64", engine=engine, row=i)
            return values.astype(np.int64, copy=False)
        if values.dtype != object:
            raise InvalidInputError(
                name, f"expected int64 values, got an array of {values.dtype}", engine=engine
            )
        values = values.tolist()
    for i, v in enumerate(values):
        if type(v) is not int and not isinstance(v, np.integer):
            raise InvalidInputError(
                name, f"expected an int, got {type(v).__name__} {v!r}", engine=engine, row=i
            )
        if not _I64_MIN <= int(v) <= _I64_MAX:
            raise InvalidInputError(name, f"{v} does not fit in int64", engine=engine, row=i)
    return np.asarray(values, dtype=np.int64) if values else np.empty(0, np.int64)


def _exact_float(x: int) -> bool:
    """Whether float64 holds the int `x` exactly (so it reads back equal to what was written)."""
    if -_F64_EXACT <= x <= _F64_EXACT:
        return True
    try:
        return float(x) == x
    except OverflowError:
        return False


def _inexact(name: str, v: Any, i: int, engine: str) -> InvalidInputError:
    return InvalidInputError(
        name, f"{v!r} cannot be stored exactly as a float64 (pass a float)", engine=engine, row=i
    )


def _float_column(name: str, values: Any, engine: str) -> np.ndarray:
    values = column_values(name, values, engine)
    if isinstance(values, np.ndarray):
        kind = values.dtype.kind
        if kind in "fiu":
            out = values.astype(np.float64)
            if kind in "iu":
                for i in np.flatnonzero((values > _F64_EXACT) | (values < -_F64_EXACT)).tolist():
                    if not _exact_float(int(values[i])):
                        raise _inexact(name, values[i], i, engine)
            elif values.dtype.itemsize > 8:  # long double: more precision than float64 keeps
                same = (out.astype(values.dtype) == values) | (np.isnan(out) & np.isnan(values))
                if not same.all():
                    i = int(np.argmin(same))
                    raise _inexact(name, values[i], i, engine)
            return out
        if values.dtype != object:
            raise InvalidInputError(
                name, f"expected float64 values, got an array of {values.dtype}", engine=engine
            )
        values = values.tolist()
    if set(map(type, values)) - {float}:
        for i, v in enumerate(values):
            if type(v) is float:
                continue
            if type(v) is int or isinstance(v, np.integer):
                if not _exact_float(int(v)):
                    raise _inexact(name, v, i, engine)
            elif isinstance(v, np.floating):
                if v.dtype.itemsize > 8 and not (np.float64(v) == v or np.isnan(v)):
                    raise _inexact(name, v, i, engine)
            else:
                raise InvalidInputError(
                    name, f"expected a number, got {type(v).__name__} {v!r}", engine=engine, row=i
                )
    return np.asarray(values, dtype=np.float64) if values else np.empty(0, np.float64)


def _typed_objects(name: str, values: Any, tp: type, engine: str) -> np.ndarray:
    values = column_values(name, values, engine)
    arr = values if isinstance(values, np.ndarray) and values.dtype == object else object_array(list(values))
    if set(map(type, arr)) - {tp}:
        for i, v in enumerate(arr):
            if type(v) is not tp:
                raise InvalidInputError(
                    name, f"expected {tp.__name__}, got {type(v).__name__} {v!r}", engine=engine, row=i
                )
    if tp is str:
        i = first_non_utf8(arr.tolist())
        if i is not None:
            check_text(name, arr[i], engine=engine, row=i)
    return arr


# -- tags ---------------------------------------------------------------------------------------


def check_tag_name(field: str, name: Any, *, engine: str = "", row: int | None = None) -> str:
    """A tag name as stored: a non-empty str of at most 200 characters, valid UTF-8 (its files'
    names are built from its UTF-8 bytes). Never coerced: an int is refused, not made "5"."""
    if type(name) is not str or not 0 < len(name) <= MAX_TAG_NAME:
        raise InvalidInputError(
            field,
            f"tag name {name!r} must be a non-empty str of at most {MAX_TAG_NAME} chars",
            engine=engine,
            row=row,
        )
    problem = utf8_problem(name)
    if problem is not None:
        raise InvalidInputError(field, f"tag name {name!r} {problem}", engine=engine, row=row)
    return name


def _check_tag_values(field: str, values: list[Any], rows: list[int] | None, engine: str) -> None:
    """Every value of one tag storable: a tag type, UTF-8 text, an int within int64. `values`
    are the tag's values (None: absent) at rows `rows` (None: at rows 0, 1, 2...)."""

    def at(k: int) -> int:
        return k if rows is None else rows[k]

    types = set(map(type, values))
    bad = types - _TAG_TYPES
    if bad:
        k = next(k for k, v in enumerate(values) if type(v) in bad)
        raise InvalidInputError(
            field, f"unsupported tag value type {type(values[k]).__name__}", engine=engine, row=at(k)
        )
    if str in types:
        strs = values if len(types) == 1 else [v for v in values if type(v) is str]
        if first_non_utf8(strs) is not None:
            k = next(k for k, v in enumerate(values) if type(v) is str and utf8_problem(v) is not None)
            check_text(field, values[k], engine=engine, row=at(k))
    if tuple in types:  # string arrays: every item a UTF-8 str
        for k, v in enumerate(values):
            if type(v) is not tuple:
                continue
            if not all(type(x) is str for x in v):
                raise InvalidInputError(
                    field, "a string array (tuple) may only hold str items", engine=engine, row=at(k)
                )
            if first_non_utf8(list(v)) is not None:
                raise InvalidInputError(
                    field, f"string array {v!r}: an item is not valid UTF-8", engine=engine, row=at(k)
                )
    if int in types and not _ints_fit(values if len(types) == 1 else [v for v in values if type(v) is int]):
        for k, v in enumerate(values):
            if type(v) is int and not _I64_MIN <= v <= _I64_MAX:
                raise InvalidInputError(field, f"{v} does not fit in int64", engine=engine, row=at(k))


def _tags_column(
    name: str, values: Any, n: int, engine: str, max_names: int | None = None
) -> dict[str, np.ndarray]:
    """Tags as one dict per row, or as a dict of tag -> column (None = absent)."""
    cols: dict[str, np.ndarray] = {}
    if isinstance(values, Mapping):
        if max_names is not None and len(values) > max_names:
            raise too_many_tag_names(name, None, max_names, engine)
        for t, col in values.items():
            check_tag_name(name, t, engine=engine)
            arr = object_array(list(column_values(f"{name}.{t}", col, engine)))
            if len(arr) != n:
                raise InvalidInputError(f"{name}.{t}", f"has {len(arr)} values, expected {n}", engine=engine)
            _check_tag_values(f"{name}.{t}", arr.tolist(), None, engine)
            cols[t] = arr
        return cols
    rows = column_values(name, values, engine)
    if len(rows) != n:
        raise InvalidInputError(name, f"has {len(rows)} rows, expected {n}", engine=engine)
    # One pass over the (tag, value) entries, never rows x tags: a batch with many tag names,
    # each on a few rows, costs what it holds (8,000 names over 8,000 rows took 17 s before).
    first: dict[Any, int] = {}  # name -> first row naming it
    present: dict[Any, tuple[list[int], list[Any]]] = {}  # name -> the rows and values given
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise InvalidInputError(
                name, f"expected a mapping of tags, got {type(r).__name__}", engine=engine, row=i
            )
        for t, v in r.items():
            got = present.get(t)
            if got is None:
                got = present[t] = ([], [])
                first[t] = i
                if max_names is not None and len(present) > max_names:
                    raise too_many_tag_names(name, None, max_names, engine)
            if v is not None:
                got[0].append(i)
                got[1].append(v)
    for t, i in first.items():
        check_tag_name(name, t, engine=engine, row=i)
    for t, (ix, vs) in present.items():
        _check_tag_values(f"{name}.{t}", vs, ix, engine)
        if len(ix) == n:
            cols[t] = object_array(vs)
        else:
            arr = cols[t] = np.full(n, None, dtype=object)
            arr[ix] = object_array(vs)
    return cols


_TAG_TYPES = frozenset(_TYPE_OF) | {type(None)}


def _ints_fit(ints: Any) -> bool:
    """True when every Python int of `ints` fits int64 (one C-level conversion, no Python loop)."""
    try:
        (ints if isinstance(ints, np.ndarray) else object_array(ints)).astype(np.int64)
    except OverflowError:
        return False
    return True


def too_many_tag_names(
    field: str, count: int | None, limit: int, engine: str, *, new: int | None = None
) -> InvalidInputError:
    """The error of a batch that would take a table past `Engine.max_tag_names`, saying how to
    fix it: fewer names (high-cardinality data belongs in values), or a higher limit. `count`
    None: the batch alone has more than `limit` (reading it stopped there)."""
    if count is None:
        what = f"the batch has more than {limit:,} distinct tag names"
    else:
        brings = "" if new is None else f" ({new:,} of them new in this batch)"
        what = f"the table would hold {count:,} distinct tag names{brings}"
    return InvalidInputError(
        field,
        f"{what}: a table may hold at most {limit:,} (each costs two "
        "files per part and a dictionary); use fewer tag names (put high-cardinality data in tag "
        "values), or raise the engine's max_tag_names (attrs.evolve(engine, max_tag_names=N))",
        engine=engine,
    )


def _tag_name_sets(table: Table) -> list[Any]:
    """The tag names of everything a table holds, one collection per part or buffered batch:
    its live parts, its flushes in progress (back in the buffer if they fail) and its buffer.

    Reads the table's buffer without its lock: buffers are replaced, never changed in place, so a
    racing write can at worst be missed, which the bound tolerates (it guards cost, and the next
    batch sees it). A `Table.tag_names()` accessor would spare this the private attributes."""
    sets: list[Any] = [h.reader.meta.tags for h in table.live_parts]
    col = table.engine.schema.tags_column
    buf = table._buffer
    if col is not None:
        mems = [*list(table._flushing), *([buf] if buf is not None else [])]
        sets += [rows[col] for mem in mems for rows in mem.batches]
    return sets


def check_tag_name_limit(
    field: str, names: Iterable[str], tables: Iterable[Table], limit: int, *, engine: str = ""
) -> None:
    """Refuse a batch whose tag `names` would take one of `tables` past `limit` distinct names.

    Names a table already holds are always accepted: only new ones count. The exact union is
    computed only when the cheap upper bound (the sum of the sizes) exceeds the limit."""
    names = set(names)
    for table in tables:
        sets = _tag_name_sets(table)
        if len(names) + sum(map(len, sets)) <= limit:
            continue
        held = set().union(*sets)
        new = names - held
        if new and len(held) + len(new) > limit:
            raise too_many_tag_names(field, len(held) + len(new), limit, engine, new=len(new))


def columns_from_batch(
    schema: BlockSchema, batch: Mapping[str, Any], engine: str = "", *, max_tag_names: int | None = None
) -> Rows:
    """Validate a columnar batch against the schema and convert it to `Rows`.

    `max_tag_names`: refuse a batch with more distinct tag names before checking them one by one
    (the table-level bound is `check_tag_name_limit`)."""
    if not isinstance(batch, Mapping):
        raise InvalidInputError(
            "batch", f"expected a mapping of column -> values, got {type(batch).__name__}", engine=engine
        )
    names = {c.name for c in schema.columns}
    for k in batch:
        if k not in names:
            raise unknown_column(k, sorted(names), engine)
    out: Rows = {}
    n: int | None = None
    for c in schema.columns:
        if c.kind is ColumnKind.TAGS:
            continue
        if c.name not in batch:
            raise InvalidInputError(c.name, "missing column", engine=engine)
        v = batch[c.name]
        if c.kind is ColumnKind.INT64:
            col = _int_column(c.name, v, engine)
        elif c.kind is ColumnKind.FLOAT64:
            col = _float_column(c.name, v, engine)
        elif c.kind is ColumnKind.BYTES:
            col = _typed_objects(c.name, v, bytes, engine)
        else:
            col = _typed_objects(c.name, v, str, engine)
        if n is None:
            n = len(col)
        elif len(col) != n:
            raise InvalidInputError(
                c.name, f"has {len(col)} values but {schema.columns[0].name} has {n}", engine=engine
            )
        out[c.name] = col
    n = n or 0
    ts = out[schema.timestamp]
    if n and ts.min() < 0:
        i = int(np.argmin(ts))
        raise InvalidInputError(schema.timestamp, f"negative timestamp {int(ts[i])}", engine=engine, row=i)
    tags = schema.tags_column
    if tags is not None:
        out[tags] = _tags_column(tags, batch[tags], n, engine, max_tag_names) if tags in batch else {}
    return out
