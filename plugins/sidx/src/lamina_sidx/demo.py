"""`lamina demo` workload of the sidx engine: request latencies indexed per endpoint.

Each entry is one request: series = hash of its endpoint, key = latency in microseconds,
data = the request ID, timestamp = when it started (spread over the hour before `now_ns`), and a
`run` tag naming this demo run, so the checks hold when the demo appends to an existing store.
The sample queries are the ones an index exists for: the slowest requests of one endpoint in the
last 15 minutes (descending key scan with a limit) and the requests of another endpoint in a
latency band (key range), each compared with the answer computed from the generated entries.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from lamina import DemoQuery, DemoReport, EngineHandle
from lamina_sidx.traces import series_of

HOUR_NS = 3600 * 10**9
FLUSH_EVERY = 10_000
DATASET = "demo"
ENDPOINTS = [f"{m} /api/{r}" for m in ("GET", "POST") for r in ("cart", "checkout", "search", "user", "item")]


def _entries(rng: random.Random, n: int, now_ns: int, first: int) -> list[tuple[str, int, int, bytes]]:
    """(endpoint, latency_us, start_ns, request_id): log-normal latencies, slower for checkout."""
    out = []
    for i in range(first, first + n):
        ep = ENDPOINTS[min(len(ENDPOINTS) - 1, int(len(ENDPOINTS) * rng.random() ** 1.5))]
        mu = 10.5 if "checkout" in ep else 9.2  # medians ~36 ms and ~10 ms
        lat = max(50, int(math.exp(rng.gauss(mu, 0.9))))
        out.append((ep, lat, now_ns - HOUR_NS + rng.randrange(HOUR_NS), b"req-%08d" % i))
    return out


def demo(
    handle: EngineHandle, *, rows: int, seed: int, now_ns: int, advance: Callable[[int], None]
) -> DemoReport:
    rng = random.Random(f"sidx-demo:{seed}")
    run = f"{seed}-{now_ns}"
    written: list[tuple[str, int, int, bytes]] = []
    flushes = 0
    while len(written) < rows:
        es = _entries(rng, min(FLUSH_EVERY, rows - len(written)), now_ns, len(written))
        batch: dict[str, Any] = {
            "series": [series_of(e[0]) for e in es],
            "key": [e[1] for e in es],
            "timestamp": [e[2] for e in es],
            "data": [e[3] for e in es],
            "tags": {"endpoint": [e[0] for e in es], "run": [run] * len(es)},
        }
        handle.write(batch, dataset=DATASET)
        if handle.flush():
            flushes += 1
        written += es
        advance(len(es))
    handle.merge_now()
    queries = [_slowest(handle, written, run, now_ns), _band(handle, written, run)]
    return DemoReport(
        rows=len(written),
        unit="entries",
        flushes=flushes,
        queries=tuple(queries),
        notes=(f"series = endpoint, key = latency (us), data = request ID; dataset {DATASET!r}",),
    )


def _slowest(handle: EngineHandle, written: list[Any], run: str, now_ns: int) -> DemoQuery:
    ep, start = "POST /api/checkout", now_ns - HOUR_NS // 4
    want = sorted(((lat, rid) for e, lat, ts, rid in written if e == ep and ts >= start), reverse=True)[:10]
    t0 = time.monotonic()
    got = handle.query(
        dataset=DATASET, series=series_of(ep), start=start, tags={"run": run}, order="desc", limit=10
    )
    ms = (time.monotonic() - t0) * 1000
    got_k = [(e.key, e.data) for e in got]
    return DemoQuery(
        label=f"10 slowest {ep}, last 15 min",
        result=", ".join(f"{k / 1000:.0f} ms" for k, _ in got_k[:3]) + ("..." if len(got_k) > 3 else ""),
        expected=", ".join(f"{k / 1000:.0f} ms" for k, _ in want[:3]) + ("..." if len(want) > 3 else ""),
        ms=ms,
        ok=got_k == want,
    )


def _band(handle: EngineHandle, written: list[Any], run: str) -> DemoQuery:
    ep, lo, hi = "GET /api/search", 50_000, 100_000
    want = sum(1 for e, lat, _, _ in written if e == ep and lo <= lat <= hi)
    t0 = time.monotonic()
    got = handle.query(dataset=DATASET, series=series_of(ep), key_min=lo, key_max=hi, tags={"run": run})
    ms = (time.monotonic() - t0) * 1000
    ok = len(got) == want and all(lo <= e.key <= hi and e.tags.get("endpoint") == ep for e in got)
    return DemoQuery(
        label=f"{ep} with latency 50-100 ms", result=f"{len(got)} requests", expected=str(want), ms=ms, ok=ok
    )
