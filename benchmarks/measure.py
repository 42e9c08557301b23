#!/usr/bin/env python3
"""Measure engine benchmark: durable ingest, merge, range queries and aggregates, with SQLite (stdlib)
measured in the same run on the same points.

Workload: `--series` series (service x instance), one point every 10 s per series, fields
latency (float, 2 decimals) and requests (int), tags service, instance (the entity) and region.
`--rewrite` of the points are sent again later with version 1 (late corrections), so both
engines resolve versions. Every engine commits durably every `--batch` points.

- Lamina: `write()` + `flush()` per batch (part files, manifest and directories fsynced);
  highest version wins at merge and query time; `query(entity=..., start, end)` and `agg=...`.
- SQLite: one transaction per batch (`executemany` upsert, WAL, `synchronous=FULL`), PRIMARY KEY
  (series, ts) WITHOUT ROWID plus an index on ts; `ON CONFLICT DO UPDATE ... WHERE
  excluded.version >= version` is the same rule; `WHERE series=? AND ts>=? AND ts<?`, `GROUP BY`.

Every answer is checked against the generator's ground truth; a disagreement is flagged in the
table. Medians of `--repeat` runs (default 3). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ingest import dir_bytes, machine

import lamina
from lamina_measure import series_id

PERF = time.perf_counter
STEP = 10 * 10**9
T0 = 1_795_000_000 * 10**9 - (1_795_000_000 * 10**9) % (86_400 * 10**9)  # a day boundary
FIELDS = {"latency": "float64", "requests": "int64"}


@dataclass
class Workload:
    services: list[str]
    instances: list[str]
    regions: list[str]
    sid: np.ndarray  # series index per point, write order
    ts: np.ndarray
    version: np.ndarray
    latency: np.ndarray
    requests: np.ndarray
    # ground truth after "highest version wins"
    truth: dict[str, Any] = field(default_factory=dict)


def generate(points: int, series: int, rewrite: float, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    nsvc = max(1, series // 20)
    services = [f"svc-{i:03d}" for i in range(nsvc)]
    instances = [f"{services[i % nsvc]}-{i // nsvc}" for i in range(series)]
    regions = [("eu-west", "us-east", "ap-south")[i % 3] for i in range(series)]
    steps = -(-points // series)
    sid = np.tile(np.arange(series), steps)[:points]
    ts = T0 + STEP * np.repeat(np.arange(steps, dtype=np.int64), series)[:points]
    base = rng.uniform(2, 200, series)
    latency = np.round(base[sid] * rng.lognormal(0, 0.4, points), 2)
    requests = rng.poisson(100, points).astype(np.int64)
    version = np.zeros(points, dtype=np.int64)
    nfix = int(points * rewrite)
    fix = np.sort(rng.choice(points, nfix, replace=False))
    sid = np.concatenate([sid, sid[fix]])
    ts = np.concatenate([ts, ts[fix]])
    version = np.concatenate([version, np.ones(nfix, dtype=np.int64)])
    latency = np.concatenate([latency, np.round(latency[fix] * 1.5, 2)])
    requests = np.concatenate([requests, requests[fix] + 1])
    w = Workload(services, instances, regions, sid, ts, version, latency, requests)
    keep = np.ones(len(ts), dtype=bool)
    keep[fix] = False  # superseded by their version-1 rewrite
    w.truth = {"sid": sid[keep], "ts": ts[keep], "latency": latency[keep], "requests": requests[keep]}
    return w


@dataclass
class Result:
    name: str
    ingest_s: float = 0.0
    merge_s: float = 0.0
    bytes: int = 0
    series_q_ms: list[float] = field(default_factory=list)
    wide_q_ms: float = 0.0
    agg_series_ms: float = 0.0
    agg_all_ms: float = 0.0
    wrong: list[str] = field(default_factory=list)


def _queries(w: Workload, n: int, seed: int) -> list[tuple[int, int, int]]:
    """(series index, start, end): one-hour windows of random series."""
    rng = np.random.default_rng(seed + 1)
    tmax = int(w.ts.max())
    out = []
    for _ in range(n):
        s = int(rng.integers(len(w.instances)))
        a = int(rng.integers(T0, max(T0 + 1, tmax - 3600 * 10**9)))
        out.append((s, a, a + 3600 * 10**9))
    return out


def _check(res: Result, what: str, got: Any, want: Any) -> None:
    ok = np.allclose(got, want) if isinstance(want, float | np.ndarray) else got == want
    if not ok:
        res.wrong.append(f"{what}: got {got!r}, want {want!r}")


def _expect(w: Workload, qs: list[tuple[int, int, int]]) -> dict[str, Any]:
    t = w.truth
    tail = int(w.ts.max()) - (int(w.ts.max()) - T0) // 20  # last 5 % of the time range
    svc = w.services[0]
    in_svc = np.array([w.instances[i].startswith(svc + "-") for i in range(len(w.instances))])
    hour = int(w.ts.max()) - 3600 * 10**9
    last = t["ts"] >= hour
    per = np.bincount(t["sid"][last], weights=t["requests"][last], minlength=len(w.instances))
    return {
        "series": [int(((t["sid"] == s) & (t["ts"] >= a) & (t["ts"] < b)).sum()) for s, a, b in qs],
        "wide": int(((t["ts"] >= tail) & in_svc[t["sid"]]).sum()),
        "tail": tail,
        "svc": svc,
        "hour": hour,
        "per_series_sum": {w.instances[i]: int(per[i]) for i in range(len(w.instances)) if per[i]},
        "avg_latency": float(t["latency"].mean()),
    }


def run_lamina(w: Workload, root: Path, batch: int, qs: list, exp: dict) -> Result:
    res = Result("Lamina measure")
    tags_all = [
        {"service": w.instances[i].rsplit("-", 1)[0], "instance": w.instances[i], "region": w.regions[i]}
        for i in range(len(w.instances))
    ]
    store = lamina.open(str(root), background=False)
    try:
        m = store.engine("measure")
        m.define("http", entity=["service", "instance"], fields=FIELDS)
        t0 = PERF()
        for a in range(0, len(w.ts), batch):
            b = min(len(w.ts), a + batch)
            sid = w.sid[a:b].tolist()
            m.write(
                {
                    "timestamp": w.ts[a:b],
                    "version": w.version[a:b],
                    "latency": w.latency[a:b],
                    "requests": w.requests[a:b],
                    "tags": {
                        "service": [tags_all[i]["service"] for i in sid],
                        "instance": [tags_all[i]["instance"] for i in sid],
                        "region": [tags_all[i]["region"] for i in sid],
                    },
                },
                dataset="http",
            )
            m.flush()
        res.ingest_s = PERF() - t0
        t0 = PERF()
        m.merge_now()
        res.merge_s = PERF() - t0
        res.bytes = dir_bytes(root)
        for (s, a, b), want in zip(qs, exp["series"], strict=True):
            ent = {"service": tags_all[s]["service"], "instance": tags_all[s]["instance"]}
            t0 = PERF()
            r = m.query(dataset="http", entity=ent, start=a, end=b)
            res.series_q_ms.append((PERF() - t0) * 1000)
            _check(res, "series range", len(r), want)
        t0 = PERF()
        r = m.query(dataset="http", start=exp["tail"], tags={"service": exp["svc"]}, fields=["latency"])
        res.wide_q_ms = (PERF() - t0) * 1000
        _check(res, "service, last 5 %", len(r), exp["wide"])
        t0 = PERF()
        agg = m.query(dataset="http", start=exp["hour"], agg="sum", field="requests", by_series=True)
        res.agg_series_ms = (PERF() - t0) * 1000
        got = {k[1]: v for k, v in agg.by_entity().items()}
        _check(res, "sum per series", got, exp["per_series_sum"])
        t0 = PERF()
        avg = m.query(dataset="http", agg="avg", field="latency").scalar
        res.agg_all_ms = (PERF() - t0) * 1000
        _check(res, "avg across series", avg, exp["avg_latency"])
    finally:
        store.close()
    return res


def run_sqlite(w: Workload, root: Path, batch: int, qs: list, exp: dict) -> Result:
    res = Result("SQLite (WAL, sync=FULL)")
    root.mkdir(parents=True)
    db = sqlite3.connect(root / "m.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE m (series INTEGER, ts INTEGER, version INTEGER, latency REAL, requests INTEGER,"
        " service TEXT, instance TEXT, region TEXT, PRIMARY KEY (series, ts)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX m_ts ON m (ts)")
    ids = [series_id([w.instances[i].rsplit("-", 1)[0], w.instances[i]]) for i in range(len(w.instances))]
    upsert = (
        "INSERT INTO m VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(series, ts) DO UPDATE SET"
        " version=excluded.version, latency=excluded.latency, requests=excluded.requests,"
        " service=excluded.service,"
        " instance=excluded.instance, region=excluded.region WHERE excluded.version >= m.version"
    )
    t0 = PERF()
    for a in range(0, len(w.ts), batch):
        b = min(len(w.ts), a + batch)
        rows = [
            (ids[s], t, v, lat, req, w.instances[s].rsplit("-", 1)[0], w.instances[s], w.regions[s])
            for s, t, v, lat, req in zip(
                w.sid[a:b].tolist(),
                w.ts[a:b].tolist(),
                w.version[a:b].tolist(),
                w.latency[a:b].tolist(),
                w.requests[a:b].tolist(),
                strict=True,
            )
        ]
        db.execute("BEGIN")
        db.executemany(upsert, rows)
        db.execute("COMMIT")
    res.ingest_s = PERF() - t0
    t0 = PERF()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    res.merge_s = PERF() - t0
    res.bytes = dir_bytes(root)
    for (s, a, b), want in zip(qs, exp["series"], strict=True):
        t0 = PERF()
        r = db.execute(
            "SELECT ts, version, latency, requests, service, instance, region FROM m"
            " WHERE series=? AND ts>=? AND ts<? ORDER BY ts",
            (ids[s], a, b),
        ).fetchall()
        res.series_q_ms.append((PERF() - t0) * 1000)
        _check(res, "series range", len(r), want)
    t0 = PERF()
    r = db.execute(
        "SELECT ts, latency FROM m WHERE ts>=? AND service=? ORDER BY ts", (exp["tail"], exp["svc"])
    ).fetchall()
    res.wide_q_ms = (PERF() - t0) * 1000
    _check(res, "service, last 5 %", len(r), exp["wide"])
    t0 = PERF()
    got = dict(
        db.execute(
            "SELECT instance, SUM(requests) FROM m WHERE ts>=? GROUP BY series", (exp["hour"],)
        ).fetchall()
    )
    res.agg_series_ms = (PERF() - t0) * 1000
    _check(res, "sum per series", got, exp["per_series_sum"])
    t0 = PERF()
    (avg,) = db.execute("SELECT AVG(latency) FROM m").fetchone()
    res.agg_all_ms = (PERF() - t0) * 1000
    _check(res, "avg across series", avg, exp["avg_latency"])
    db.close()
    return res


def median(runs: list[Result]) -> Result:
    out = Result(runs[0].name)
    for f in ("ingest_s", "merge_s", "bytes", "wide_q_ms", "agg_series_ms", "agg_all_ms"):
        setattr(out, f, statistics.median(getattr(r, f) for r in runs))
    out.series_q_ms = [statistics.median(x for r in runs for x in r.series_q_ms)]
    out.wrong = sorted({x for r in runs for x in r.wrong})
    return out


def render(results: list[Result], points: int) -> str:
    base = results[0]
    rows = [
        ("ingest, points/s (durable every batch)", lambda r: points / r.ingest_s, "{:,.0f}", True),
        ("merge / checkpoint, s", lambda r: r.merge_s, "{:.2f}", False),
        ("on disk, MB", lambda r: r.bytes / 1e6, "{:.1f}", False),
        ("one series, 1 h range, median ms", lambda r: r.series_q_ms[0], "{:.2f}", False),
        ("one service, last 5 %, ms", lambda r: r.wide_q_ms, "{:.1f}", False),
        ("sum(requests) per series, last 1 h, ms", lambda r: r.agg_series_ms, "{:.1f}", False),
        ("avg(latency) across series, all, ms", lambda r: r.agg_all_ms, "{:.1f}", False),
    ]
    names = [r.name for r in results]
    width = max(len(x[0]) for x in rows) + 2
    lines = ["".ljust(width) + "".join(n.rjust(26) for n in names) + "   Lamina / peer"]
    for label, fn, fmt, higher in rows:
        vals = [fn(r) for r in results]
        ratios = [vals[0] / v if v else float("nan") for v in vals[1:]]
        lines.append(
            label.ljust(width)
            + "".join(fmt.format(v).rjust(26) for v in vals)
            + "   "
            + ", ".join(
                f"{x:.2f}x" + (" (higher is better)" if higher else " (lower is better)") for x in ratios
            )
        )
    for r in results:
        for wr in r.wrong:
            lines.append(f"WRONG ANSWER [{r.name}] {wr}")
    del base
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=300_000)
    p.add_argument("--series", type=int, default=1_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--rewrite", type=float, default=0.02)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dir", default=None)
    p.add_argument("--quick", action="store_true", help="30,000 points, 1 run")
    a = p.parse_args(argv)
    if a.quick:
        a.points, a.repeat, a.queries = 30_000, 1, 50
    w = generate(a.points, a.series, a.rewrite, a.seed)
    qs = _queries(w, a.queries, a.seed)
    exp = _expect(w, qs)
    base = Path(tempfile.mkdtemp(prefix="lamina-measure-bench-", dir=a.dir))
    runners: list[tuple[str, Callable[..., Result]]] = [("lamina", run_lamina), ("sqlite", run_sqlite)]
    runs: dict[str, list[Result]] = {n: [] for n, _ in runners}
    try:
        for i in range(a.repeat):
            for name, fn in runners:
                gc.collect()
                d = base / f"{name}-{i}"
                runs[name].append(fn(w, d, a.batch, qs, exp))
                shutil.rmtree(d, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    total = len(w.ts)
    print(
        f"measure benchmark: {total:,} points written ({a.points:,} + {total - a.points:,} "
        f"version-1 rewrites), {a.series:,} series, durable every {a.batch:,}; "
        f"{a.queries} series queries; medians of {a.repeat}"
    )
    print(machine(base.parent))
    print(render([median(runs[n]) for n, _ in runners], total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
