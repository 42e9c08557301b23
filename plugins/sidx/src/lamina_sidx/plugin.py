"""Entry point of the sidx engine (`lamina.engines: sidx = lamina_sidx.plugin`).

Declares what an index entry is; the core does every byte of I/O. Nothing here opens a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

from lamina import API_VERSION, Engine, InvalidInputError, MergePolicyParams, Rows, hookimpl, take_rows
from lamina_sidx import query as q
from lamina_sidx.schema import LAYOUT, SCHEMA

#: A keep-predicate: given rows of one series (columns `series`, `key`, `timestamp`, `data`,
#: `tags`), a boolean mask of the entries to keep (e.g. False where `data` names a deleted trace).
KeepPredicate = Callable[[Rows], np.ndarray]


def normalize(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """The core checks kinds, lengths and timestamps and names the field; sidx adds nothing but
    a clear error for a batch that is not a mapping."""
    if not isinstance(batch, Mapping):
        raise InvalidInputError(
            "batch", f"expected a mapping of column -> values, got {type(batch).__name__}", engine="sidx"
        )
    return batch


def interleave_by_key(keep: KeepPredicate | None) -> Callable[[Rows], Rows]:
    """The equal-key rule: entries of one series from several parts arrive already interleaved
    by key (the core re-sorts by the sort key, stably); keep all of them, or those `keep` allows.

    The core runs the rule when a flush builds a part and when a merge meets a series in more than
    one input; a series present in one input only is copied raw, so `keep` is not applied to it
    in that merge (a later merge that meets the series again applies it)."""
    if keep is None:
        return lambda rows: rows

    def rule(rows: Rows) -> Rows:
        mask = np.asarray(keep(rows), dtype=bool)
        n = len(rows["key"])
        if mask.shape != (n,):
            raise ValueError(f"keep-predicate returned a mask of shape {mask.shape}, expected ({n},)")
        return rows if mask.all() else take_rows(rows, np.flatnonzero(mask))

    return rule


def make_engine(*, keep: KeepPredicate | None = None, name: str = "sidx", **overrides: Any) -> Engine:
    """The sidx engine, optionally with a keep-predicate applied by its equal-key rule (and any
    other Engine field overridden, e.g. `retention_ns`)."""
    eng = Engine(
        name=name,
        api_version=API_VERSION,
        schema=SCHEMA,
        layout=LAYOUT,
        normalize=normalize,
        query=q.run,
        equal_key_rule=interleave_by_key(keep),
        merge_policy=MergePolicyParams(max_parts=15, min_multiplier=1.7),
        description="Secondary index: (series, int64 key) -> data; key-range scans asc/desc",
        demo=_demo,
    )
    return attrs.evolve(eng, **overrides) if overrides else eng


def _demo(*args: Any, **kwargs: Any) -> Any:
    from lamina_sidx.demo import demo

    return demo(*args, **kwargs)


ENGINE = make_engine()


@hookimpl
def lamina_register_engines(register: Callable[[Engine], None]) -> None:
    register(ENGINE)
