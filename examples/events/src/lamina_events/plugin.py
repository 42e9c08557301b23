"""Entry point of the events engine (`lamina.engines: events = lamina_events.plugin`).

Declares what an event stores; the core does every byte of I/O. Nothing here opens a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lamina import API_VERSION, Capabilities, Engine, InvalidInputError, MergePolicyParams, hookimpl
from lamina_events.query import events
from lamina_events.rules import drop_identical_events
from lamina_events.schema import LAYOUT, MAX_KIND_CHARS, MAX_SOURCE_BYTES, SCHEMA


def _is_sequence(v: Any) -> bool:
    return hasattr(v, "__len__") and not isinstance(v, str | bytes)


def normalize(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """Event-specific checks on top of the core's type checks: a source is 1 to 255 bytes, a kind
    1 to 64 characters. Wrong types and lengths are left to the core, which names the column."""
    if not isinstance(batch, Mapping):
        raise InvalidInputError(
            "batch", f"expected a mapping of column -> values, got {type(batch).__name__}", engine="events"
        )
    sources = batch.get("source", ())
    if _is_sequence(sources):
        for i, s in enumerate(sources):
            if type(s) is bytes and not 0 < len(s) <= MAX_SOURCE_BYTES:
                raise InvalidInputError(
                    "source", f"must be 1 to {MAX_SOURCE_BYTES} bytes, got {len(s)}", engine="events", row=i
                )
    kinds = batch.get("kind", ())
    if _is_sequence(kinds):
        for i, k in enumerate(kinds):
            if type(k) is str and not 0 < len(k) <= MAX_KIND_CHARS:
                raise InvalidInputError(
                    "kind", f"must be 1 to {MAX_KIND_CHARS} characters, got {len(k)}", engine="events", row=i
                )
    return batch


ENGINE = Engine(
    name="events",
    api_version=API_VERSION,
    schema=SCHEMA,
    layout=LAYOUT,
    normalize=normalize,
    query=events,
    equal_key_rule=drop_identical_events,
    merge_policy=MergePolicyParams(max_parts=10, min_multiplier=1.7),
    capabilities=Capabilities(merge=True, time_range_query=True, key_lookup=True, tags=True),
    description="Application events per source; scans by time range, kind and source",
)


@hookimpl
def lamina_register_engines(register: Callable[[Engine], None]) -> None:
    register(ENGINE)
