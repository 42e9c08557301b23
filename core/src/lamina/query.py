"""What an engine's query function gets: consistent snapshots of the parts it may need.

The context picks the tables whose time segment overlaps the query, takes a snapshot of each
(committed parts, parts being flushed, and a memory part of unflushed rows), prunes parts by their
time bounds, and releases everything when the query ends. A damaged part met during the query is
quarantined by the caller (EngineHandle.query), and the error names it.

The `check_*` functions check the arguments every engine's query takes (the dataset, time bounds in
ns, order, limit, tag names, values and conditions) with one wording whichever engine an
application queries: an `InvalidInputError` naming the argument and the engine, before any part is
read. A malformed argument is refused, never answered with nothing: `tags={"a": object()}` or
`dataset="../../x"` matching no row would look like a correct, empty answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from lamina.batch import check_tag_name, check_text
from lamina.errors import InvalidInputError
from lamina.format.part_reader import PartReader
from lamina.format.tags import _TYPE_OF
from lamina.names import valid_dataset
from lamina.schema import BlockSchema
from lamina.snapshot import Snapshot

if TYPE_CHECKING:
    from lamina.table import Table


class QueryContext:
    def __init__(self, schema: BlockSchema, tables: list[Table]) -> None:
        self.schema = schema
        self._tables = tables
        self._snaps: list[tuple[Table, Snapshot]] = []
        self.parts_read = 0

    def parts(self, start: int | None = None, end: int | None = None) -> Iterator[PartReader]:
        """Readers of every part that may hold rows with start <= ts < end (None = unbounded):
        table by table (time order), each table's parts oldest data first, then its unflushed rows."""
        for table in self._tables:
            seg = table.segment_start
            interval = table.engine.segment_interval_ns
            if (end is not None and seg >= end) or (start is not None and seg + interval <= start):
                continue
            snap = table.snapshot()
            self._snaps.append((table, snap))
            # oldest data first, unflushed rows last: engines rely on it for "write order"
            committed = sorted(
                (h for h in snap.parts if not h.in_memory), key=lambda h: h.reader.meta.data_seq
            )
            for h in [*committed, *(h for h in snap.parts if h.in_memory)]:
                m = h.reader.meta
                if (end is not None and m.min_ts >= end) or (start is not None and m.max_ts < start):
                    continue
                self.parts_read += 1
                yield h.reader

    def table_of(self, reader: PartReader) -> Table | None:
        for table, snap in self._snaps:
            if any(h.reader is reader for h in snap.parts):
                return table
        return None

    def close(self) -> None:
        for _, snap in self._snaps:
            snap.release()
        self._snaps.clear()


def check_time_bound(name: str, value: Any, *, engine: str) -> int | None:
    """`start` / `end`: an int (ns) or None (open). Any int: bounds beyond int64 are unbounded."""
    if value is not None and type(value) is not int:
        raise InvalidInputError(
            name, f"must be an int (ns) or None, got {type(value).__name__}", engine=engine
        )
    return value


def check_order(value: Any, *, engine: str) -> str:
    # type first: `in` compares with ==, which a numpy array answers elementwise (ValueError)
    if type(value) is not str or value not in ("asc", "desc"):
        raise InvalidInputError("order", f"must be 'asc' or 'desc', got {value!r}", engine=engine)
    return value


def check_limit(value: Any, *, engine: str, required: bool = False) -> int | None:
    """A non-negative int; None (no limit) unless `required`."""
    if (value is None and not required) or (type(value) is int and value >= 0):
        return value
    raise InvalidInputError("limit", f"must be a non-negative int, got {value!r}", engine=engine)


def check_dataset(value: Any, *, engine: str) -> str:
    """A dataset name (`names.valid_dataset`): a query of "../../x" or of 5 is refused, not
    answered with nothing, and a write never creates such a directory."""
    if type(value) is not str:
        raise InvalidInputError(
            "dataset", f"must be a str, got {type(value).__name__} {value!r}", engine=engine
        )
    if not valid_dataset(value):
        raise InvalidInputError(
            "dataset",
            f"{value!r} is not a valid dataset name (1 to 100 of A-Z a-z 0-9 _ . -, "
            "not starting with . or -)",
            engine=engine,
        )
    return value


def check_text_arg(name: str, value: Any, *, engine: str) -> str:
    """A str argument that can name stored text (valid UTF-8: a lone surrogate never matches)."""
    if type(value) is not str:
        raise InvalidInputError(name, f"must be a str, got {type(value).__name__} {value!r}", engine=engine)
    return check_text(name, value, engine=engine)


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def check_tag_value(name: str, value: Any, *, engine: str) -> Any:
    """A value a stored tag can have: str (UTF-8), int64, float, bytes, bool, or a tuple of
    UTF-8 str. Anything else could never match, so asking for it is a mistake."""
    tp = type(value)
    if tp not in _TYPE_OF:
        raise InvalidInputError(
            name,
            "must be a tag value (str, int, float, bytes, bool or a tuple of str), "
            f"got {tp.__name__} {value!r}",
            engine=engine,
        )
    if tp is str:
        check_text(name, value, engine=engine)
    elif tp is int and not _I64_MIN <= value <= _I64_MAX:
        raise InvalidInputError(name, f"{value} does not fit in int64", engine=engine)
    elif tp is tuple:
        for x in value:
            if type(x) is not str:
                raise InvalidInputError(
                    name,
                    f"a string array (tuple) holds str only, got {type(x).__name__} {x!r}",
                    engine=engine,
                )
            check_text(name, x, engine=engine)
    return value


def check_tag_conditions(
    tags: Any,
    *,
    engine: str,
    field: str = "tags",
    callables: bool = True,
    predicate_types: tuple[type, ...] = (),
) -> dict[str, Any]:
    """`tags={name: condition}`: each name a tag name (`batch.check_tag_name`, never coerced to
    str), each condition a tag value (equality), a list, tuple or set of tag values (IN), a
    callable predicate (with `callables`) or an instance of `predicate_types`; None stands for
    an absent tag and matches nothing. Returns the conditions as a dict (`tags=None`: none)."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInputError(
            field, f"must be a mapping of tag -> condition, got {type(tags).__name__}", engine=engine
        )
    out: dict[str, Any] = {}
    for name, want in tags.items():
        check_tag_name(field, name, engine=engine)
        where = f"{field}.{name}"
        if want is None or isinstance(want, predicate_types) or (callables and callable(want)):
            pass  # None: an absent tag, which no stored row has (the engines answer nothing)
        elif isinstance(want, list | tuple | set | frozenset):
            for v in want:
                if v is not None:
                    check_tag_value(where, v, engine=engine)
        else:
            check_tag_value(where, want, engine=engine)
        out[name] = want
    return out
