"""`lamina demo` for the stream engine: application log lines, then checked sample queries.

Synthetic but shaped like real logs: a handful of services on a few hosts each (one series per
service x host), mostly INFO with some DEBUG/WARN and a few ERROR lines, an HTTP status and a
latency per line, messages from a few templates. Every line carries a `run_id` tag unique to this
demo run, so the checks hold when the demo appends to a store that already has demo data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lamina import DemoQuery, DemoReport
from lamina_stream.model import And, Eq, In, Range

SERVICES = ("checkout", "cart", "search", "auth", "payments", "catalog")
HOSTS_PER_SERVICE = 4
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
LEVEL_WEIGHTS = (0.15, 0.70, 0.11, 0.04)
TEMPLATES = (
    "GET /api/{svc}/items/{n} served",
    "POST /api/{svc}/orders accepted order={n}",
    "cache miss for key {svc}:{n}",
    "upstream timeout after {n} ms",
    "user {n} signed in",
)
BATCH = 10_000
SPAN_NS = 3600 * 10**9  # the lines cover the hour before now
WINDOW_NS = 300 * 10**9


def _generate(rows: int, seed: int, now_ns: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    svc = rng.integers(0, len(SERVICES), rows)
    host = rng.integers(0, HOSTS_PER_SERVICE, rows)
    level = rng.choice(len(LEVELS), rows, p=LEVEL_WEIGHTS)
    ts = np.sort(rng.integers(now_ns - SPAN_NS, now_ns, rows))
    latency = rng.lognormal(4.0, 1.0, rows).astype(np.int64)
    status = np.where(level == 3, rng.choice([500, 502, 503], rows), rng.choice([200, 201, 204, 404], rows))
    tmpl = rng.integers(0, len(TEMPLATES), rows)
    num = rng.integers(0, 100_000, rows)
    return {
        "svc": svc,
        "host": host,
        "level": level,
        "ts": ts,
        "latency": latency,
        "status": status,
        "tmpl": tmpl,
        "num": num,
    }


def _batch(g: dict[str, np.ndarray], a: int, b: int, run_id: str) -> dict[str, Any]:
    svc, host = g["svc"][a:b].tolist(), g["host"][a:b].tolist()
    level, tmpl, num = g["level"][a:b].tolist(), g["tmpl"][a:b].tolist(), g["num"][a:b].tolist()
    lat, status = g["latency"][a:b].tolist(), g["status"][a:b].tolist()
    return {
        "series": {
            "service": [SERVICES[s] for s in svc],
            "host": [f"{SERVICES[s]}-{h}" for s, h in zip(svc, host, strict=True)],
        },
        "timestamp": g["ts"][a:b],
        "element_id": [f"{run_id}-{i}" for i in range(a, b)],
        "tags": {
            "level": [LEVELS[v] for v in level],
            "message": [
                TEMPLATES[t].format(svc=SERVICES[s], n=n) for t, s, n in zip(tmpl, svc, num, strict=True)
            ],
            "status": status,
            "latency_ms": lat,
            "run_id": [run_id] * (b - a),
        },
    }


def demo(handle: Any, *, rows: int, seed: int, now_ns: int, advance: Callable[[int], None]) -> DemoReport:
    """Write `rows` log lines (flushing every 10,000), merge, run four checked queries."""
    run_id = f"r{seed}-{now_ns}"  # ns: two runs within one second must not share it
    g = _generate(rows, seed, now_ns)
    flushes = 0
    for a in range(0, rows, BATCH):
        b = min(rows, a + BATCH)
        handle.write(_batch(g, a, b, run_id))
        handle.flush()
        flushes += 1
        advance(b - a)
    handle.merge_now()
    mine = Eq("run_id", run_id)
    queries = []

    def check(label: str, run: Callable[[], Any], expected: Any, show: Callable[[Any], str] = str) -> None:
        t0 = time.perf_counter()
        got = run()
        ms = (time.perf_counter() - t0) * 1000
        queries.append(DemoQuery(label, show(got), show(expected), ms, ok=got == expected))

    # 1. ERROR lines of one service in the last 5 minutes
    recent = g["ts"] >= now_ns - WINDOW_NS
    err = recent & (g["level"] == 3) & (g["svc"] == 0)
    check(
        "ERROR lines of checkout, last 5 min",
        lambda: len(
            handle.query(
                start=now_ns - WINDOW_NS,
                end=now_ns,
                where=And((mine, Eq("service", "checkout"), Eq("level", "ERROR"))),
            )
        ),
        int(err.sum()),
    )
    # 2. slow WARN/ERROR requests (latency >= 1 s) anywhere in the hour
    slow = (g["latency"] >= 1000) & (g["level"] >= 2)
    check(
        "WARN/ERROR lines with latency >= 1000 ms",
        lambda: len(
            handle.query(where=And((mine, Range("latency_ms", ge=1000), In("level", ["WARN", "ERROR"]))))
        ),
        int(slow.sum()),
    )
    # 3. the 5 newest lines of one host, newest first
    h = (g["svc"] == 2) & (g["host"] == 1)
    idx = np.flatnonzero(h)
    newest = sorted(((int(g["ts"][i]), f"{run_id}-{i}") for i in idx), reverse=True)[:5]
    check(
        "5 newest lines of host search-1",
        lambda: [
            (e.timestamp, e.element_id)
            for e in handle.query(
                series={"service": "search", "host": "search-1"}, where=mine, order="desc", limit=5
            )
        ],
        newest,
        lambda v: ", ".join(e for _, e in v) if v else "none",
    )
    # 4. one line by element ID, with its message
    if not rows:
        return DemoReport(rows=0, unit="log lines", flushes=flushes, queries=tuple(queries))
    k = rows // 2
    want_msg = TEMPLATES[int(g["tmpl"][k])].format(svc=SERVICES[int(g["svc"][k])], n=int(g["num"][k]))
    check(
        f"line {run_id}-{k} by element ID",
        lambda: [
            e.tags.get("message") for e in handle.query(element_ids=[f"{run_id}-{k}"], projection=["message"])
        ],
        [want_msg],
    )
    return DemoReport(
        rows=rows,
        unit="log lines",
        flushes=flushes,
        queries=tuple(queries),
        notes=(f"{len(SERVICES) * HOSTS_PER_SERVICE} series (service x host); run_id tag {run_id}",),
    )
