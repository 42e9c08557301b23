"""What the trace engine stores and returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Span:
    trace_id: bytes
    span_id: bytes
    timestamp: int
    duration: int
    payload: bytes
    tags: dict[str, Any] = attrs.field(factory=dict, eq=True, hash=False)


@attrs.frozen
class TagFilter:
    """Rows whose tag `name` satisfies `predicate` (for ranges, prefixes, ...)."""

    name: str
    predicate: Callable[[Any], bool]
