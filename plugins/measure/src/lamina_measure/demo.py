"""`lamina demo` for the measure engine: HTTP latency and request counts per (service, instance).

The workload writes one point every 10 s per series, flushing durably every 10k points, then
re-sends some points with a higher version (late corrections, as a metrics pipeline does after a
retry), merges, and checks four queries against what it generated: a series' point count, the
newest points of a series, total requests across series, and the corrected maximum latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lamina import DemoQuery, DemoReport

SERVICES = ("checkout", "cart", "search", "auth", "catalog", "payments", "shipping", "gateway")
INSTANCES = 4
STEP_NS = 10 * 10**9
FLUSH_EVERY = 10_000
FIELDS = {"latency_ms": "float64", "requests": "int64"}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def demo(handle: Any, *, rows: int, seed: int, now_ns: int, advance: Callable[[int], None]) -> DemoReport:
    rng = np.random.default_rng(seed)
    dataset = f"http-{now_ns}-{seed}"  # one measure per run (ns: even two runs in one second)
    handle.define(dataset, entity=["service", "instance"], fields=FIELDS)
    series = [(s, f"{s}-{i}") for s in SERVICES for i in range(INSTANCES)]
    per_series = max(1, -(-rows // len(series)))
    t_first = now_ns - per_series * STEP_NS
    t_first -= t_first % STEP_NS
    base = rng.uniform(5, 80, len(series))
    # ground truth, per series: timestamps, latency, requests (after corrections)
    ts_all = t_first + STEP_NS * np.arange(per_series, dtype=np.int64)
    lat = np.round(base[:, None] * rng.lognormal(0, 0.3, (len(series), per_series)), 2)
    req = rng.poisson(120, (len(series), per_series)).astype(np.int64)
    written = flushes = 0
    pending = 0
    # time-major order, as a scraper would send them
    step = -(-FLUSH_EVERY // len(series))  # time steps per write: about FLUSH_EVERY points
    for k0 in range(0, per_series, step):
        k1 = min(per_series, k0 + step)
        ks = np.arange(k0, k1)
        n = len(ks) * len(series)
        sidx = np.tile(np.arange(len(series)), len(ks))
        kk = np.repeat(ks, len(series))
        handle.write(
            {
                "timestamp": ts_all[kk],
                "tags": {
                    "service": [series[i][0] for i in sidx],
                    "instance": [series[i][1] for i in sidx],
                    "region": ["eu-west" if i % 2 else "us-east" for i in sidx],
                },
                "latency_ms": lat[sidx, kk],
                "requests": req[sidx, kk],
            },
            dataset=dataset,
        )
        written += n
        pending += n
        advance(n)
        if pending >= FLUSH_EVERY:
            handle.flush()
            flushes += 1
            pending = 0
    # late corrections: every 7th point of the first series, version 1, latency re-measured
    fix = np.arange(0, per_series, 7)
    lat[0, fix] = np.round(lat[0, fix] * 3 + 1000, 2)
    handle.write(
        {
            "timestamp": ts_all[fix],
            "version": np.ones(len(fix), dtype=np.int64),
            "tags": {"service": [series[0][0]] * len(fix), "instance": [series[0][1]] * len(fix)},
            "latency_ms": lat[0, fix],
            "requests": req[0, fix],
        },
        dataset=dataset,
    )
    written += len(fix)
    advance(len(fix))
    handle.flush()
    flushes += 1
    handle.merge_now()
    return DemoReport(
        rows=written,
        unit="points",
        flushes=flushes,
        queries=_queries(handle, dataset, series, ts_all, lat, req),
        notes=(f"measure {dataset!r}: {len(series)} series x {per_series} points, {len(fix)} corrected",),
    )


def _queries(
    handle: Any,
    dataset: str,
    series: list[tuple[str, str]],
    ts_all: np.ndarray,
    lat: np.ndarray,
    req: np.ndarray,
) -> tuple[DemoQuery, ...]:
    out = []
    hour = 3600 * 10**9
    end = int(ts_all[-1]) + 1
    s3 = {"service": series[3][0], "instance": series[3][1]}
    got, ms = _timed(lambda: handle.query(dataset=dataset, entity=s3, start=end - hour, end=end, agg="count"))
    want = int(((ts_all >= end - hour) & (ts_all < end)).sum())
    out.append(
        DemoQuery(
            f"points of {s3['instance']} in the last hour", str(got.scalar), str(want), ms, got.scalar == want
        )
    )
    got, ms = _timed(
        lambda: handle.query(dataset=dataset, entity=s3, order="desc", limit=3, fields=["latency_ms"])
    )
    want_l = lat[3, ::-1][:3].tolist()
    out.append(
        DemoQuery(
            f"newest 3 latencies of {s3['instance']}",
            str(got.fields["latency_ms"].tolist()),
            str(want_l),
            ms,
            got.fields["latency_ms"].tolist() == want_l,
        )
    )
    got, ms = _timed(lambda: handle.query(dataset=dataset, agg="sum", field="requests"))
    want_r = int(req.sum())
    out.append(
        DemoQuery("requests across all series", str(got.scalar), str(want_r), ms, got.scalar == want_r)
    )
    s0 = {"service": series[0][0], "instance": series[0][1]}
    got, ms = _timed(lambda: handle.query(dataset=dataset, entity=s0, agg="max", field="latency_ms"))
    want_m = float(lat[0].max())
    out.append(
        DemoQuery(
            f"max latency of {s0['instance']} after corrections",
            str(got.scalar),
            str(want_m),
            ms,
            got.scalar == want_m,
        )
    )
    return tuple(out)
