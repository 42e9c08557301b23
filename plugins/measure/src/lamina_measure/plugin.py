"""Entry point of the measure engine (`lamina.engines: measure = lamina_measure.plugin`).

Every measure is a dataset defined once with its entity tags and typed fields::

    m = store.engine("measure")
    m.define("http", entity=["service", "instance"], fields={"latency": "float64", "requests": "int64"})
    m.write({"timestamp": [...], "tags": [{"service": "api", "instance": "i-1"}, ...],
             "latency": [...], "requests": [...]}, dataset="http")

The core persists the definition and serves each dataset with `specialize(ENGINE, options)`:
the schema, layout, normalize and query of that measure. Nothing here opens a file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

from lamina import API_VERSION, DatasetSupport, Engine, InvalidInputError, MergePolicyParams, hookimpl
from lamina.batch import is_sequence
from lamina_measure import demo as demo_mod
from lamina_measure import options as opt
from lamina_measure import query as q
from lamina_measure.rule import highest_version_wins
from lamina_measure.schema import layout_for, schema_for
from lamina_measure.series import entity_value_problem, series_ids

ENGINE_NAME = opt.ENGINE_NAME


def _entity_columns(opts: opt.MeasureOptions, tags: Any, n: int) -> list[list[Any]]:
    """The entity values of every row, one list per entity tag, each checked: present, and a str,
    int64 or bytes (the core checks the other tags)."""
    if isinstance(tags, Mapping):
        cols = []
        for t in opts.entity:
            col = tags.get(t)
            if col is None:
                raise InvalidInputError(
                    f"tags.{t}", "missing entity tag", engine=ENGINE_NAME, row=0 if n else None
                )
            if not is_sequence(col):
                raise InvalidInputError(
                    f"tags.{t}", f"expected a sequence, got {type(col).__name__}", engine=ENGINE_NAME
                )
            cols.append(list(col))
    else:
        if not is_sequence(tags):
            raise InvalidInputError(
                "tags", f"expected one mapping per row, got {type(tags).__name__}", engine=ENGINE_NAME
            )
        rows = list(tags)
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise InvalidInputError(
                    "tags", f"expected a mapping of tags, got {type(r).__name__}", engine=ENGINE_NAME, row=i
                )
        cols = []
        for t in opts.entity:
            col = []
            for i, r in enumerate(rows):
                if t not in r:
                    raise InvalidInputError(f"tags.{t}", "missing entity tag", engine=ENGINE_NAME, row=i)
                col.append(r[t])
            cols.append(col)
    for t, col in zip(opts.entity, cols, strict=True):
        if len(col) != n:
            raise InvalidInputError(f"tags.{t}", f"has {len(col)} values, expected {n}", engine=ENGINE_NAME)
        for i, v in enumerate(col):
            problem = entity_value_problem(v)
            if problem is not None:
                raise InvalidInputError(f"tags.{t}", problem, engine=ENGINE_NAME, row=i)
    return cols


def normalize(opts: opt.MeasureOptions, batch: Mapping[str, Any]) -> dict[str, Any]:
    """Add the series IDs (from the entity tags) and default versions (0) to a batch; the core
    then checks every column's type strictly. Versions, when given, must be int64s like any
    INT64 column; equal versions at one timestamp resolve to the later write."""
    if not isinstance(batch, Mapping):
        raise InvalidInputError(
            "batch", f"expected a mapping of column -> values, got {type(batch).__name__}", engine=ENGINE_NAME
        )
    if "series" in batch:
        raise InvalidInputError(
            "series", "is computed from the entity tags; do not pass it", engine=ENGINE_NAME
        )
    ts = batch.get("timestamp")
    if ts is None:
        raise InvalidInputError("timestamp", "missing column", engine=ENGINE_NAME)
    if not is_sequence(ts):
        raise InvalidInputError(
            "timestamp", f"expected a sequence of values, got {type(ts).__name__}", engine=ENGINE_NAME
        )
    n = len(ts)
    if "tags" not in batch:
        raise InvalidInputError(
            "tags",
            f"missing: the entity tags {list(opts.entity)} name each point's series",
            engine=ENGINE_NAME,
        )
    out = dict(batch)
    out["series"] = series_ids(_entity_columns(opts, batch["tags"], n))
    if "version" not in out:
        out["version"] = np.zeros(n, dtype=np.int64)
    return out


def _unbound_normalize(batch: Mapping[str, Any]) -> Any:
    raise InvalidInputError("dataset", "define the measure first (EngineHandle.define)", engine=ENGINE_NAME)


def _unbound_query(ctx: Any, **kwargs: Any) -> Any:
    raise InvalidInputError("dataset", "define the measure first (EngineHandle.define)", engine=ENGINE_NAME)


def specialize(engine: Engine, options: Mapping[str, Any]) -> Engine:
    """`DatasetSupport.specialize`: the engine serving one measure."""
    opts = opt.parse(options)
    return attrs.evolve(
        engine,
        schema=schema_for(opts),
        layout=layout_for(opts),
        normalize=functools.partial(normalize, opts),
        query=functools.partial(q.run, opts),
        datasets=None,
    )


#: A placeholder definition for the base engine's own (never used for data) schema and layout:
#: the core serves every dataset through `specialize`.
_PLACEHOLDER = opt.MeasureOptions(("entity",), (("value", "float64"),))

ENGINE = Engine(
    name=ENGINE_NAME,
    api_version=API_VERSION,
    schema=schema_for(_PLACEHOLDER),
    layout=layout_for(_PLACEHOLDER),
    normalize=_unbound_normalize,
    query=_unbound_query,
    equal_key_rule=highest_version_wins,
    merge_policy=MergePolicyParams(max_parts=15, min_multiplier=1.7),
    datasets=DatasetSupport(validate=opt.validate, specialize=specialize),
    demo=demo_mod.demo,
    description="Metric points per series (entity tags), versioned, typed fields; range queries, aggregates",
)


def measure_engine(**options: Any) -> Engine:
    """The engine of one measure, with its schema fixed (no `define` needed): for tests and for
    applications embedding a single measure. Same schema, rule and queries as a defined dataset."""
    return specialize(ENGINE, opt.validate(options))


@hookimpl
def lamina_register_engines(register: Callable[[Engine], None]) -> None:
    register(ENGINE)
