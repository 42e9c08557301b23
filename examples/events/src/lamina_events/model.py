"""What the events engine returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    source: bytes
    ts: int
    kind: str
    body: bytes
    tags: dict[str, Any] = field(default_factory=dict, hash=False)
