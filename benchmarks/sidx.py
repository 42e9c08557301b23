"""sidx range queries: Lamina's sidx engine against SQLite with an index on (series, key).

    python3 -m uv run python benchmarks/sidx.py            # 500,000 entries, 100 series
    python3 -m uv run python benchmarks/sidx.py --quick    # 100,000 entries, smoke check
    python3 -m uv run python benchmarks/sidx.py --repeat 3 # medians of 3 runs

One process, one generated workload, both engines fed the same entries in the same durable
batches (Lamina: write() + flush(); SQLite: BEGIN; executemany; COMMIT with WAL and
synchronous=FULL, then CREATE INDEX is not used: the index exists before the first insert, as an
index would in production). Entries model a latency index: series = endpoint (Zipf-skewed),
key = latency in us (log-normal), timestamp over one hour, data = a 16-byte request ID.

Queries, each run for `--queries` different parameter draws (the same draws for both engines), one
untimed warm-up first; the table reports the median latency:
    narrow range   series = s AND key BETWEEN a AND a + w       (~50 rows)
    wide range     series = s AND key BETWEEN a AND a + 20w     (~1,000 rows)
    top 10 desc    series = s ORDER BY key DESC LIMIT 10
    top 100, 15 min   series = s AND ts >= now - 15 min ORDER BY key DESC LIMIT 100
Lamina is measured before the merge (one part per batch) and after `merge_now()` (one part).
Results are compared with SQLite's answer (same rows, same order of keys); a mismatch is flagged.
Not a test: nothing asserts.
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
from lamina_sidx.plugin import ENGINE

PERF = time.perf_counter
T0 = 1_764_064_800_000_000_000  # 2025-11-25 10:00 UTC: one hour inside one daily segment
HOUR = 3600 * 10**9


def generate(n: int, series: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, series + 1, dtype=np.float64)
    p = 1 / ranks
    return {
        "series": rng.choice(series, size=n, p=p / p.sum()).astype(np.int64),
        "key": np.maximum(50, rng.lognormal(9.5, 1.0, size=n)).astype(np.int64),
        "timestamp": (T0 + rng.integers(0, HOUR, size=n)).astype(np.int64),
        "data": np.array([rng.bytes(16) for _ in range(n)], dtype=object),
    }


def draws(cols: dict[str, np.ndarray], k: int, seed: int) -> list[tuple[int, int, int, int]]:
    """(series, key start, narrow end, wide end): a series among the 20 most frequent, a start at
    a random key of it, ends 50 and 1,000 of its keys further (so ~50 and ~1,000 rows)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(k):
        s = int(rng.integers(0, 20))
        keys = np.sort(cols["key"][cols["series"] == s])
        i = int(rng.integers(0, max(1, len(keys) - 1000)))
        end = len(keys) - 1
        out.append((s, int(keys[i]), int(keys[min(i + 49, end)]), int(keys[min(i + 999, end)])))
    return out


class LaminaSide:
    def __init__(self, path: str) -> None:
        self.store = lamina.Store(path, engines=[ENGINE], background=False)
        self.h = self.store.engine("sidx")

    def ingest(self, batch: dict[str, Any]) -> None:
        self.h.write(batch)
        self.h.flush()

    def merge(self) -> None:
        self.h.merge_now()

    def range(self, s: int, lo: int, hi: int) -> list[int]:
        return [e.key for e in self.h.query(series=s, key_min=lo, key_max=hi)]

    def top(self, s: int, n: int, start: int | None = None) -> list[int]:
        return [e.key for e in self.h.query(series=s, start=start, order="desc", limit=n)]

    def close(self) -> None:
        self.store.close()


class SqliteSide:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(str(Path(path) / "sidx.db"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE e (series INTEGER, key INTEGER, ts INTEGER, data BLOB)")
        self.db.execute("CREATE INDEX e_sk ON e (series, key)")

    def ingest(self, batch: dict[str, Any]) -> None:
        rows = zip(
            batch["series"].tolist(),
            batch["key"].tolist(),
            batch["timestamp"].tolist(),
            batch["data"],
            strict=True,
        )
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO e VALUES (?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def merge(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def range(self, s: int, lo: int, hi: int) -> list[int]:
        q = "SELECT key, data FROM e WHERE series = ? AND key BETWEEN ? AND ? ORDER BY key"
        return [r[0] for r in self.db.execute(q, (s, lo, hi))]

    def top(self, s: int, n: int, start: int | None = None) -> list[int]:
        if start is None:
            q, args = "SELECT key, data FROM e WHERE series = ? ORDER BY key DESC LIMIT ?", (s, n)
        else:
            q = "SELECT key, data FROM e WHERE series = ? AND ts >= ? ORDER BY key DESC LIMIT ?"
            args = (s, start, n)  # type: ignore[assignment]
        return [r[0] for r in self.db.execute(q, args)]

    def close(self) -> None:
        self.db.close()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = PERF()
    r = fn()
    return PERF() - t, r


def run_queries(side: Any, ds: list[tuple[int, int, int, int]]) -> dict[str, tuple[float, list[Any]]]:
    """Median ms per query kind, and every answer (for the cross-check)."""
    kinds: dict[str, Callable[[tuple[int, int, int, int]], Any]] = {
        "narrow range (~50 rows)": lambda d: side.range(d[0], d[1], d[2]),
        "wide range (~1,000 rows)": lambda d: side.range(d[0], d[1], d[3]),
        "top 10 by key desc": lambda d: side.top(d[0], 10),
        "top 100 desc, last 15 min": lambda d: side.top(d[0], 100, T0 + HOUR - HOUR // 4),
    }
    out = {}
    for name, fn in kinds.items():
        fn(ds[0])  # warm-up
        times, answers = [], []
        for d in ds:
            dt, r = timed(lambda d=d, fn=fn: fn(d))
            times.append(dt * 1000)
            answers.append(r)
        out[name] = (statistics.median(times), answers)
    return out


def one_run(args: argparse.Namespace, base: Path) -> dict[str, float | bool]:
    cols = generate(args.entries, args.series, args.seed)
    ds = draws(cols, args.queries, args.seed)
    res: dict[str, float | bool] = {}
    answers: dict[str, dict[str, list[Any]]] = {}
    for name, cls in (("Lamina", LaminaSide), ("SQLite", SqliteSide)):
        d = base / name
        d.mkdir(parents=True)
        side = cls(str(d))
        t = PERF()
        for i in range(0, args.entries, args.batch):
            side.ingest({k: v[i : i + args.batch] for k, v in cols.items()})
        res[f"{name}:ingest"] = args.entries / (PERF() - t)
        if name == "Lamina":
            q = run_queries(side, ds)
            for k, (ms, _) in q.items():
                res[f"{name}:before:{k}"] = ms
        dt, _ = timed(side.merge)
        res[f"{name}:merge_s"] = dt
        q = run_queries(side, ds)
        for k, (ms, _) in q.items():
            res[f"{name}:{k}"] = ms
        answers[name] = {k: ans for k, (_, ans) in q.items()}
        res[f"{name}:disk_mb"] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) / 1e6
        side.close()
    res["match"] = answers["Lamina"] == answers["SQLite"]
    res["rows_narrow"] = statistics.mean(len(a) for a in answers["SQLite"]["narrow range (~50 rows)"])
    res["rows_wide"] = statistics.mean(len(a) for a in answers["SQLite"]["wide range (~1,000 rows)"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="100,000 entries")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    if args.quick:
        args.entries = 100_000
    runs = []
    for r in range(args.repeat):
        base = Path(tempfile.mkdtemp(prefix="sidx-bench-", dir=args.dir))
        try:
            runs.append(one_run(args, base))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"run {r + 1}/{args.repeat} done", flush=True)

    def med(key: str) -> float:
        return statistics.median(float(x[key]) for x in runs)

    kinds = [
        "narrow range (~50 rows)",
        "wide range (~1,000 rows)",
        "top 10 by key desc",
        "top 100 desc, last 15 min",
    ]
    rows: list[tuple[str, str, str, str]] = [
        ("durable ingest, entries/s", f"{med('Lamina:ingest'):,.0f}", f"{med('SQLite:ingest'):,.0f}", "hi"),
        ("merge / checkpoint, s", f"{med('Lamina:merge_s'):.2f}", f"{med('SQLite:merge_s'):.2f}", "lo"),
        ("on disk after merge, MB", f"{med('Lamina:disk_mb'):.1f}", f"{med('SQLite:disk_mb'):.1f}", "lo"),
    ]
    for k in kinds:
        rows.append((f"{k} before merge, ms p50", f"{med(f'Lamina:before:{k}'):.2f}", "—", "lo"))
        rows.append((f"{k}, ms p50", f"{med(f'Lamina:{k}'):.2f}", f"{med(f'SQLite:{k}'):.2f}", "lo"))

    def ratio(a: str, b: str) -> str:
        try:
            x, y = float(a.replace(",", "")), float(b.replace(",", ""))
        except ValueError:
            return ""
        return f" ({y / x:.2g}x)" if x else ""

    w = max(len(r[0]) for r in rows)
    print(
        f"\nsidx range queries: {args.entries:,} entries, {args.series} series, batches of {args.batch:,}, "
        f"{args.queries} draws per query, medians of {args.repeat} run(s)"
    )
    print(f"| {'metric':<{w}} | {'Lamina sidx':>12} | {'SQLite (series, key) index':>28} |")
    print(f"|{'-' * (w + 2)}|{'-' * 14}|{'-' * 30}|")
    for name, a, b, _ in rows:
        print(f"| {name:<{w}} | {a:>12} | {b + ratio(a, b):>28} |")
    print(
        f"\nrows per query (mean): narrow {med('rows_narrow'):.0f}, wide {med('rows_wide'):.0f}; "
        f"results match SQLite: {'yes' if all(r['match'] for r in runs) else 'NO'}"
    )
    print("(Nx) = SQLite / Lamina (above 1x for a latency: Lamina is faster; for a rate: SQLite is)")


if __name__ == "__main__":
    main()
