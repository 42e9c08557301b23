"""The engine contract: what a plugin hands the core through `lamina_register_engines`.

An engine is data, not behaviour over files: a schema, a layout, how to turn user batches into
columns, the equal-key rule for merges, merge-policy parameters, and query functions that run over
core-provided part readers. The core calls these directly; nothing here touches storage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from lamina.datasets import DatasetSupport
from lamina.format.rows import Rows
from lamina.schema import BlockSchema, FileLayout

#: The engine API this core implements. An engine targeting another major version is refused at
#: load time with both versions named.
API_VERSION = 1

DAY_NS = 86_400 * 10**9


@attrs.frozen
class MergePolicyParams:
    """VictoriaMetrics-style size-tiered search parameters (see merge/policy.py)."""

    max_parts: int = attrs.field(default=15, validator=attrs.validators.ge(2))
    min_multiplier: float = attrs.field(default=1.7, validator=attrs.validators.gt(1.0))
    max_output_bytes: int = 16 * 1024**3


@attrs.frozen
class Capabilities:
    """What an engine supports; the contract suite skips tests for what it does not."""

    merge: bool = True
    time_range_query: bool = True
    key_lookup: bool = True
    tags: bool = True


@attrs.frozen
class DemoQuery:
    """One sample query of an engine's demo, as `lamina demo` prints it."""

    label: str
    result: str
    expected: str
    ms: float
    #: False when the answer disagrees with what the demo wrote: `lamina demo` then exits 1.
    ok: bool = True


@attrs.frozen
class DemoReport:
    """What an engine's demo did: rows written (and their unit), durable flushes, and the sample
    queries it checked against the data it generated."""

    rows: int
    unit: str
    flushes: int
    queries: tuple[DemoQuery, ...] = ()
    notes: tuple[str, ...] = ()


#: `demo(handle, *, rows, seed, now_ns, advance) -> DemoReport`: write about `rows` rows of a
#: realistic synthetic workload through `handle` (an `EngineHandle`), flushing durably, merge, run
#: a few queries checked against what was written, and report. `advance(n)` moves the progress
#: bar by n rows. Nothing here may open a file: the handle does every byte of I/O.
DemoFn = Callable[..., DemoReport]


def keep_all_rows(rows: Rows) -> Rows:
    """The default equal-key rule: keep every row (concatenate)."""
    return rows


@attrs.frozen(kw_only=True)
class Engine:
    """An engine's declaration.

    Threading: `normalize`, `equal_key_rule` and `query` may be called concurrently, from
    application threads and from the store's background thread (flushes and merges). Keep them
    free of mutable shared state; everything they need arrives as arguments.
    """

    name: str
    api_version: int
    schema: BlockSchema
    layout: FileLayout
    #: Adapt a user batch (column -> sequence) to the schema: engine-specific checks and
    #: conversions, raising `InvalidInputError` naming the field. The core then validates kinds,
    #: lengths and timestamps strictly (lamina.batch).
    normalize: Callable[[Any], Any]
    #: `query(ctx, **kwargs)`: the engine's query entry point over a `QueryContext`.
    query: Callable[..., Any]
    #: Equal-key rule: given all rows of one block key (sorted, older parts first), return the
    #: rows to keep. Default: keep all (concatenate).
    equal_key_rule: Callable[[Rows], Rows] = keep_all_rows
    merge_policy: MergePolicyParams = MergePolicyParams()
    segment_interval_ns: int = DAY_NS
    #: Segments entirely older than now - retention are dropped whole (None = keep forever).
    retention_ns: int | None = None
    #: Flush a table's buffer once it holds this many rows (also on `flush_interval_s`).
    flush_rows: int = 100_000
    #: At most this many distinct tag names per table (one time segment of a dataset), so every
    #: part, flushed or merged, holds at most as many: each name costs two files per part and a
    #: dictionary, and 8,000 names made one flush take 18.6 s and 1.56 GB. A write that would
    #: exceed it is refused (`InvalidInputError` on the tags column, naming the limit); names
    #: a table already holds stay writable. Raise it with `attrs.evolve(engine, max_tag_names=N)`.
    max_tag_names: int = attrs.field(default=1024, validator=attrs.validators.ge(1))
    capabilities: Capabilities = Capabilities()
    description: str = ""
    #: Optional workload for `lamina demo` (see `DemoFn`); engines without one are listed only.
    demo: DemoFn | None = None
    #: Per-dataset options (a measure's fields, say): `EngineHandle.define` persists them and the
    #: core derives each dataset's engine from them (see lamina.datasets). None: one static schema.
    datasets: DatasetSupport | None = None

    def __attrs_post_init__(self) -> None:
        self.schema.check_layout(self.layout)
        # Segment directories are named to the minute (to the day for whole days); an interval
        # that is not a whole number of minutes would give two segments one name.
        if self.segment_interval_ns <= 0 or self.segment_interval_ns % (60 * 10**9):
            raise ValueError(
                f"segment_interval_ns must be a positive multiple of 60 s, got {self.segment_interval_ns}"
            )
