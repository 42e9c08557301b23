"""Columnar row sets: how rows travel between the core and an engine.

`Rows` maps column name -> numpy array (int64, float64, or object for bytes/str); the TAGS column
maps to a `dict[tag, object array]` with None where a row lacks the tag. Columnar all the way keeps
per-row Python work off the ingest and merge paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lamina.schema import BlockSchema, ColumnKind

Rows = dict[str, Any]


def rows_len(rows: Mapping[str, Any]) -> int:
    for v in rows.values():
        if isinstance(v, dict):
            continue
        return len(v)
    return 0


def take(rows: Rows, idx: np.ndarray | slice) -> Rows:
    out: Rows = {}
    for name, v in rows.items():
        if isinstance(v, dict):
            out[name] = {t: col[idx] for t, col in v.items()}
        else:
            out[name] = v[idx]
    return out


def empty_rows(schema: BlockSchema) -> Rows:
    out: Rows = {}
    for c in schema.columns:
        if c.kind is ColumnKind.TAGS:
            out[c.name] = {}
        elif c.kind is ColumnKind.INT64:
            out[c.name] = np.empty(0, dtype=np.int64)
        elif c.kind is ColumnKind.FLOAT64:
            out[c.name] = np.empty(0, dtype=np.float64)
        else:
            out[c.name] = np.empty(0, dtype=object)
    return out


def concat(schema: BlockSchema, parts: Sequence[Rows]) -> Rows:
    """Concatenate row sets; a tag missing from some inputs becomes None there."""
    if len(parts) == 1:
        return parts[0]
    out: Rows = {}
    lens = [rows_len(p) for p in parts]
    for c in schema.columns:
        if c.kind is ColumnKind.TAGS:
            names: dict[str, None] = {}
            for p in parts:
                names.update(dict.fromkeys(p[c.name]))
            tags = {}
            for t in names:
                cols = []
                for p, n in zip(parts, lens, strict=True):
                    col = p[c.name].get(t)
                    cols.append(col if col is not None else np.full(n, None, dtype=object))
                tags[t] = np.concatenate(cols) if cols else np.empty(0, dtype=object)
            out[c.name] = tags
        else:
            out[c.name] = np.concatenate([p[c.name] for p in parts])
    return out


def object_array(values: Iterable[Any]) -> np.ndarray:
    """A 1-D object array (np.array would build 2-D arrays out of equal-length bytes)."""
    seq = values if isinstance(values, list | tuple) else list(values)
    arr = np.empty(len(seq), dtype=object)
    arr[:] = seq
    return arr


def row_sizes(schema: BlockSchema, rows: Rows) -> np.ndarray:
    """Approximate uncompressed bytes per row (for cutting blocks at `block_max_bytes`)."""
    n = rows_len(rows)
    size = np.zeros(n, dtype=np.int64)
    for c in schema.columns:
        if c.kind in (ColumnKind.INT64, ColumnKind.FLOAT64):
            size += 8
        elif c.kind in (ColumnKind.BYTES, ColumnKind.STRING):
            size += np.fromiter(map(len, rows[c.name]), dtype=np.int64, count=n)
        else:
            size += 2 * len(rows[c.name])
    return size
