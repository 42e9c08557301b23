"""Which parts to merge next: VictoriaMetrics' size-tiered search for the cheapest write
amplification, with per-engine parameters.

Among windows of similarly sized parts (sorted by size), pick the one maximising
`m = sum(sizes) / max(size)`: how many "largest parts" worth of data one merge consolidates. A merge
is worth doing only if m >= max(max_parts / 2, min_multiplier), so each byte is rewritten
O(log n) times instead of at every flush.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lamina.engine import MergePolicyParams


def select_parts(parts: Sequence[Any], params: MergePolicyParams) -> list[int]:
    """Part IDs to merge (empty: nothing worth merging). `parts` have part_id/size/created_ns."""
    limit = params.max_output_bytes
    cands = [p for p in parts if p.size <= limit / params.min_multiplier]
    cands.sort(key=lambda p: (p.size, -p.created_ns))
    max_parts = min(params.max_parts, len(cands))
    if max_parts < 2:
        return []
    min_m = max(params.max_parts / 2, params.min_multiplier)
    best: list[Any] = []
    best_m = 0.0
    for length in range(max(2, math.ceil(max_parts / 2)), max_parts + 1):
        for start in range(len(cands) - length + 1):
            window = cands[start : start + length]
            largest = window[-1].size
            if window[0].size * len(window) < largest:
                continue  # unbalanced: a small part dragged into a big rewrite
            total = sum(p.size for p in window)
            if total > limit:
                break
            m = total / max(largest, 1)
            if m > best_m:
                best, best_m = window, m
    if best_m < min_m:
        return []
    return sorted(p.part_id for p in best)
