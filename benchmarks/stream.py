"""Durable log ingest and filtered queries: Lamina's stream engine against SQLite (stdlib).

    python3 -m uv run python benchmarks/stream.py              # 200,000 log lines, medians of 3
    python3 -m uv run python benchmarks/stream.py --quick      # 30,000 lines, 1 run (smoke)

One process, one generated workload (application log lines: service, host, level, status,
latency, message), both engines fed the same lines in the same batches of 10,000, each batch
acknowledged only after the engine's durable call returns:

    Lamina   write() then flush()                (fsync files, metadata, manifest, dirs), then merge_now()
    SQLite   BEGIN; executemany; COMMIT          (WAL, synchronous=FULL; indexes on ts, (host, ts),
                                                  element_id: what a log table is queried by)

Queries (each the median of --query-runs runs, answers checked against the generator):
    Q1  ERROR lines of one service in the last 5 minutes
    Q2  WARN/ERROR lines with latency >= 2000 ms, whole hour
    Q3  the 100 newest lines of one host
    Q4  one line by element ID (median over 20 IDs)
For Lamina the table also shows blocks read / blocks in the time range (counted by QueryStats):
what the per-block tag filters let the scan skip. Not a test: nothing asserts; a result that
disagrees with the ground truth is flagged in the table.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import lamina
from lamina.plugins import Registry
from lamina_stream import And, Eq, In, QueryStats, Range
from lamina_stream.plugin import ENGINE

PERF = time.perf_counter
NOW = 1_700_000_000_000_000_000
SPAN_NS = 3600 * 10**9
WINDOW_NS = 300 * 10**9
SERVICES = ("checkout", "cart", "search", "auth", "payments", "catalog", "ads", "mail")
HOSTS = 5
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
TEMPLATES = ("GET /api/{} served", "POST /api/{} accepted", "cache miss {}", "upstream timeout {}")


class Workload:
    """Every column built once with numpy, before any timing."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.n = n
        self.svc = rng.integers(0, len(SERVICES), n)
        self.host = rng.integers(0, HOSTS, n)
        self.level = rng.choice(4, n, p=(0.15, 0.70, 0.11, 0.04))
        self.ts = np.sort(rng.integers(NOW - SPAN_NS, NOW, n))
        self.latency = rng.lognormal(4.0, 1.2, n).astype(np.int64)
        self.status = np.where(self.level == 3, 500, 200)
        self.service_s = [SERVICES[s] for s in self.svc.tolist()]
        self.host_s = [
            f"{SERVICES[s]}-{h}" for s, h in zip(self.svc.tolist(), self.host.tolist(), strict=True)
        ]
        self.level_s = [LEVELS[v] for v in self.level.tolist()]
        tm = rng.integers(0, len(TEMPLATES), n).tolist()
        self.message = [TEMPLATES[t].format(i) for i, t in enumerate(tm)]
        self.eid = [f"e{i:09d}" for i in range(n)]

    def lamina_batch(self, a: int, b: int) -> dict[str, Any]:
        return {
            "series": {"service": self.service_s[a:b], "host": self.host_s[a:b]},
            "timestamp": self.ts[a:b],
            "element_id": self.eid[a:b],
            "tags": {
                "level": self.level_s[a:b],
                "status": self.status[a:b].tolist(),
                "latency_ms": self.latency[a:b].tolist(),
                "message": self.message[a:b],
            },
        }

    def sql_rows(self, a: int, b: int) -> list[tuple[Any, ...]]:
        return list(
            zip(
                self.ts[a:b].tolist(),
                self.eid[a:b],
                self.service_s[a:b],
                self.host_s[a:b],
                self.level_s[a:b],
                self.status[a:b].tolist(),
                self.latency[a:b].tolist(),
                self.message[a:b],
                strict=True,
            )
        )

    # ground truth
    def q1(self) -> int:
        return int(((self.ts >= NOW - WINDOW_NS) & (self.level == 3) & (self.svc == 0)).sum())

    def q2(self) -> int:
        return int(((self.latency >= 2000) & (self.level >= 2)).sum())

    def q3(self) -> list[str]:
        idx = np.flatnonzero((self.svc == 2) & (self.host == 1))
        return [
            self.eid[i] for i in sorted(idx.tolist(), key=lambda i: (int(self.ts[i]), i), reverse=True)[:100]
        ]


def dir_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median ms of `runs` calls (after one warm call) and the last answer."""
    out = fn()
    lat = []
    for _ in range(runs):
        t0 = PERF()
        out = fn()
        lat.append((PERF() - t0) * 1000)
    return statistics.median(lat), out


def run_lamina(w: Workload, root: str, batch: int, runs: int) -> dict[str, Any]:
    m: dict[str, Any] = {}
    store = lamina.Store(root, registry=Registry(), engines=[ENGINE], background=False)
    try:
        h = store.engine("stream")
        t0 = PERF()
        for a in range(0, w.n, batch):
            h.write(w.lamina_batch(a, min(w.n, a + batch)))
            h.flush()
        m["ingest"] = w.n / (PERF() - t0)
        m["disk_ingest"] = dir_bytes(root) / 1e6
        t0 = PERF()
        h.merge_now()
        m["merge_s"] = PERF() - t0
        m["disk"] = dir_bytes(root) / 1e6
        ok = True
        st1, st2 = QueryStats(), QueryStats()
        q1 = And((Eq("service", "checkout"), Eq("level", "ERROR")))
        m["q1"], got = timed(lambda: h.query(start=NOW - WINDOW_NS, end=NOW, where=q1), runs)
        h.query(start=NOW - WINDOW_NS, end=NOW, where=q1, stats=st1)
        ok &= len(got) == w.q1()
        q2 = And((Range("latency_ms", ge=2000), In("level", ["WARN", "ERROR"])))
        m["q2"], got = timed(lambda: h.query(where=q2), runs)
        h.query(where=q2, stats=st2)
        ok &= len(got) == w.q2()
        m["q3"], got = timed(
            lambda: h.query(series={"service": "search", "host": "search-1"}, order="desc", limit=100), runs
        )
        ok &= [e.element_id for e in got] == w.q3()
        ids = [w.eid[i] for i in range(0, w.n, max(1, w.n // 20))][:20]
        lat = []
        for e in ids:
            t0 = PERF()
            got = h.query(element_ids=[e])
            lat.append((PERF() - t0) * 1000)
            ok &= [x.element_id for x in got] == [e]
        m["q4"] = statistics.median(lat)
        m["q1_blocks"] = f"{st1.blocks_read}/{st1.blocks_total - st1.blocks_pruned_time}"
        m["q2_blocks"] = f"{st2.blocks_read}/{st2.blocks_total - st2.blocks_pruned_time}"
        m["ok"] = ok
    finally:
        store.close()
    return m


def run_sqlite(w: Workload, root: str, batch: int, runs: int) -> dict[str, Any]:
    m: dict[str, Any] = {}
    Path(root).mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(Path(root) / "logs.db"), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE logs (ts INTEGER, element_id TEXT, service TEXT, host TEXT, level TEXT,"
            " status INTEGER, latency_ms INTEGER, message TEXT)"
        )
        db.execute("CREATE INDEX logs_ts ON logs (ts)")
        db.execute("CREATE INDEX logs_host_ts ON logs (host, ts)")
        db.execute("CREATE INDEX logs_eid ON logs (element_id)")
        t0 = PERF()
        for a in range(0, w.n, batch):
            db.execute("BEGIN")
            db.executemany("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?)", w.sql_rows(a, min(w.n, a + batch)))
            db.execute("COMMIT")
        m["ingest"] = w.n / (PERF() - t0)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        m["disk_ingest"] = m["disk"] = dir_bytes(root) / 1e6
        m["merge_s"] = float("nan")
        ok = True

        def q1() -> list[Any]:
            return db.execute(
                "SELECT * FROM logs WHERE ts >= ? AND ts < ? AND service = 'checkout' AND level = 'ERROR'",
                (NOW - WINDOW_NS, NOW),
            ).fetchall()

        m["q1"], got = timed(q1, runs)
        ok &= len(got) == w.q1()
        m["q2"], got = timed(
            lambda: db.execute(
                "SELECT * FROM logs WHERE latency_ms >= 2000 AND level IN ('WARN', 'ERROR')"
            ).fetchall(),
            runs,
        )
        ok &= len(got) == w.q2()
        m["q3"], got = timed(
            lambda: db.execute(
                "SELECT * FROM logs WHERE host = 'search-1' ORDER BY ts DESC, element_id DESC LIMIT 100"
            ).fetchall(),
            runs,
        )
        ok &= [r[1] for r in got] == w.q3()
        ids = [w.eid[i] for i in range(0, w.n, max(1, w.n // 20))][:20]
        lat = []
        for e in ids:
            t0 = PERF()
            got = db.execute("SELECT * FROM logs WHERE element_id = ?", (e,)).fetchall()
            lat.append((PERF() - t0) * 1000)
            ok &= [r[1] for r in got] == [e]
        m["q4"] = statistics.median(lat)
        m["q1_blocks"] = m["q2_blocks"] = "-"
        m["ok"] = ok
    finally:
        db.close()
    return m


ROWS = [
    ("ingest", "durable ingest, lines/s", "{:,.0f}"),
    ("merge_s", "merge, s", "{:.2f}"),
    ("disk_ingest", "on disk after ingest, MB", "{:.1f}"),
    ("disk", "on disk at the end, MB", "{:.1f}"),
    ("q1", "Q1 ERROR of a service, last 5 min, ms", "{:.2f}"),
    ("q1_blocks", "  blocks read / in time range", "{}"),
    ("q2", "Q2 latency >= 2000 & WARN/ERROR, ms", "{:.2f}"),
    ("q2_blocks", "  blocks read / in time range", "{}"),
    ("q3", "Q3 100 newest lines of a host, ms", "{:.2f}"),
    ("q4", "Q4 one line by element ID, ms", "{:.2f}"),
    ("ok", "answers match ground truth", "{}"),
]


def median_of(runs: list[dict[str, Any]], key: str) -> Any:
    vals = [r[key] for r in runs]
    if isinstance(vals[0], bool):
        return all(vals)
    if isinstance(vals[0], str):
        return vals[len(vals) // 2]
    return statistics.median(vals)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="30,000 lines, one run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine; the table shows medians")
    ap.add_argument("--batch", type=int, default=10_000, help="lines per durable commit")
    ap.add_argument("--query-runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 30_000, 1
    w = Workload(args.rows, args.seed)
    base = tempfile.mkdtemp(prefix="lamina-stream-bench-", dir=args.dir)
    results: dict[str, list[dict[str, Any]]] = {"Lamina stream": [], "SQLite": []}
    try:
        for r in range(args.repeat):
            for name, fn in (("Lamina stream", run_lamina), ("SQLite", run_sqlite)):
                root = str(Path(base) / f"{name.split()[0].lower()}-{r}")
                results[name].append(fn(w, root, args.batch, args.query_runs))
                shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    names = list(results)
    print(f"\nstream benchmark: {args.rows:,} log lines, batches of {args.batch:,}, medians of {args.repeat}")
    width = max(len(label) for _, label, _ in ROWS) + 2
    print(f"{'':{width}}" + "".join(f"{n:>16}" for n in names) + f"{'Lamina/SQLite':>16}")
    for key, label, fmt in ROWS:
        vals = [median_of(results[n], key) for n in names]
        cells = "".join(f"{fmt.format(v):>16}" for v in vals)
        ratio = ""
        if (
            all(isinstance(v, float | int) and not isinstance(v, bool) for v in vals)
            and vals[1]
            and vals[1] == vals[1]
        ):
            ratio = f"{vals[0] / vals[1]:.2f}x"
        print(f"{label:{width}}{cells}{ratio:>16}")
    print("\nratios: ingest higher is better; times and sizes lower is better.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
