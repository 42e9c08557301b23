"""The equal-key rule of a measure: at one (series, timestamp), the highest version wins.

Equal versions: the later write wins (the row that comes last in write order), so rewriting a
point with the same version is an overwrite, as in a key-value store. The same function serves
merges (rows of one series, older parts first), flushes (rows in arrival order) and queries (rows
of every part a query reads, oldest data first, unflushed rows last): a query never shows a
superseded point, merged or not.
"""

from __future__ import annotations

import numpy as np

from lamina import Rows, take_rows


def winners(series: np.ndarray, ts: np.ndarray, version: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the rows that survive: per (series, timestamp) the highest version,
    ties to the row that comes last. Rows may be in any order; position is write order."""
    n = len(ts)
    if n <= 1:
        return np.arange(n)
    # last key sorts first: by series, timestamp, version, then position
    order = np.lexsort((np.arange(n), version, ts, series))
    s, t = series[order], ts[order]
    last = np.empty(n, dtype=bool)
    last[-1] = True
    np.not_equal(s[1:], s[:-1], out=last[:-1])
    last[:-1] |= t[1:] != t[:-1]
    return np.sort(order[last])


def highest_version_wins(rows: Rows) -> Rows:
    """`Engine.equal_key_rule` over the rows of one series."""
    keep = winners(rows["series"], rows["timestamp"], rows["version"])
    if len(keep) == len(rows["timestamp"]):
        return rows
    return take_rows(rows, keep)
