"""Entry point of the trace engine (`lamina.engines: trace = lamina_trace.plugin`).

Declares what a trace stores; the core does every byte of I/O. Nothing here opens a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lamina import API_VERSION, Engine, InvalidInputError, MergePolicyParams, QueryContext, hookimpl
from lamina.batch import is_sequence
from lamina_trace import query as q
from lamina_trace.schema import LAYOUT, MAX_ID_BYTES, SCHEMA


def normalize(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """Trace-specific checks on top of the core's type checks: IDs non-empty and bounded,
    durations non-negative. Non-sequences are left to the core's check, which names the column."""
    if not isinstance(batch, Mapping):
        raise InvalidInputError(
            "batch", f"expected a mapping of column -> values, got {type(batch).__name__}", engine="trace"
        )
    for col in ("trace_id", "span_id"):
        values = batch.get(col, ())
        if not is_sequence(values):
            continue
        for i, v in enumerate(values):
            if type(v) is bytes and not 0 < len(v) <= MAX_ID_BYTES:
                raise InvalidInputError(
                    col, f"must be 1 to {MAX_ID_BYTES} bytes, got {len(v)}", engine="trace", row=i
                )
    durations = batch.get("duration", ())
    if is_sequence(durations):
        for i, d in enumerate(durations):
            if isinstance(d, int | np.integer) and not isinstance(d, bool) and d < 0:
                raise InvalidInputError("duration", f"negative duration {d}", engine="trace", row=i)
    return batch


def query(
    ctx: QueryContext,
    *,
    trace_ids: Sequence[bytes] | None = None,
    start: int | None = None,
    end: int | None = None,
    tags: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> list[Any]:
    """`trace_ids=[...]`: whole traces; otherwise spans in [start, end) matching `tags`."""
    if trace_ids is not None:
        # tags={} is no condition; never `bool(tags)`: an array argument has no truth value
        has_tags = tags is not None and not (isinstance(tags, Mapping) and not tags)
        if start is not None or end is not None or has_tags or limit is not None:
            raise InvalidInputError(
                "trace_ids", "cannot be combined with start/end/tags/limit", engine="trace"
            )
        if not is_sequence(trace_ids):  # bytes would be read as a list of ints
            raise InvalidInputError(
                "trace_ids",
                f"expected a list of trace IDs (bytes), got {type(trace_ids).__name__}",
                engine="trace",
            )
        return q.by_trace_ids(ctx, list(trace_ids))
    return q.by_time_range(ctx, start, end, tags, limit)


ENGINE = Engine(
    name="trace",
    api_version=API_VERSION,
    schema=SCHEMA,
    layout=LAYOUT,
    normalize=normalize,
    query=query,
    merge_policy=MergePolicyParams(max_parts=15, min_multiplier=1.7),
    description="Spans grouped per trace ID; lookups by trace ID, scans by time range and tags",
)


@hookimpl
def lamina_register_engines(register: Callable[[Engine], None]) -> None:
    register(ENGINE)
