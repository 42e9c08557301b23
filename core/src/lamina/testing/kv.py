"""A minimal reference engine ("kv": key, timestamp, value, tags) for core and contract tests.

It declares the smallest useful schema and a full-scan query, so core tests exercise flush, merge,
recovery and quarantine without depending on any in-tree engine distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina import API_VERSION, BlockSchema, Column, ColumnKind, Engine, FileLayout, QueryContext
from lamina.engine import MergePolicyParams
from lamina.query import check_time_bound

SCHEMA = BlockSchema(
    columns=(
        Column("key", ColumnKind.BYTES),
        Column("ts", ColumnKind.INT64),
        Column("value", ColumnKind.BYTES),
        Column("tags", ColumnKind.TAGS),
    ),
    block_key="key",
    sort_key=("key", "ts"),
    timestamp="ts",
)
LAYOUT = FileLayout(
    files=(("values.bin", ("key", "value")), ("ts.bin", ("ts",))),
    key_filter="key.filter",
    granule_files=("ts.bin",),
)


def scan(
    ctx: QueryContext, *, start: int | None = None, end: int | None = None
) -> list[tuple[bytes, int, bytes, dict[str, Any]]]:
    """Every row with start <= ts < end (None = unbounded) as (key, ts, value, tags), sorted."""
    check_time_bound("start", start, engine="kv")
    check_time_bound("end", end, engine="kv")
    lo = -(2**63) if start is None else start
    hi = 2**63 if end is None else end
    out = []
    for part in ctx.parts(start, end):
        for i in range(len(part.blocks.keys)):
            r = part.read_block(i)
            tags = r.get("tags", {})
            for j in range(len(r["key"])):
                if not lo <= int(r["ts"][j]) < hi:
                    continue
                out.append(
                    (
                        r["key"][j],
                        int(r["ts"][j]),
                        r["value"][j],
                        {t: c[j] for t, c in tags.items() if c[j] is not None},
                    )
                )
    out.sort(key=lambda x: (x[0], x[1], x[2]))
    return out


def _normalize(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    return batch


KV = Engine(
    name="kv",
    api_version=API_VERSION,
    schema=SCHEMA,
    layout=LAYOUT,
    normalize=_normalize,
    query=scan,
    merge_policy=MergePolicyParams(max_parts=4, min_multiplier=1.5),
    description="reference engine for tests",
)


def kv_batch(
    keys: list[bytes],
    ts: list[int],
    values: list[bytes] | None = None,
    tags: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "key": keys,
        "ts": ts,
        "value": values
        if values is not None
        else [k + b"=" + str(t).encode() for k, t in zip(keys, ts, strict=True)],
        "tags": tags if tags is not None else [{"k": k.decode(errors="replace")[:1]} for k in keys],
    }


def open_kv_store(path: str, fs: Any = None, **kw: Any) -> Any:
    """A store with only the kv engine (no entry points), background work off."""
    from lamina.plugins import Registry
    from lamina.store import Store

    kw.setdefault("background", False)
    return Store(path, fs=fs, registry=Registry(), engines=[KV], **kw)
