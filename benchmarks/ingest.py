"""Durable trace ingest, merge and reads: Lamina against a raw-disk baseline and embedded peers.

    cd /work/main && python3 -m uv run python benchmarks/ingest.py            # 300,000 spans
    python3 -m uv run python benchmarks/ingest.py --quick                     # 30,000 spans, smoke
    python3 -m uv run python benchmarks/ingest.py --repeat 3 --profile        # medians + cProfile

One process, one generated workload (benchmarks/workload.py), every engine fed the same spans in
the same batches of 10,000, each batch acknowledged only after the engine's durable call returns:

    Lamina   write() then flush()                        (fsync files, metadata, manifest, dirs)
    SQLite   BEGIN; executemany; COMMIT                  (WAL, synchronous=FULL)
    Parquet  write_table(tmp); fsync; rename; fsync dir  (pyarrow, zstd; optional)
    LMDB     txn.commit()                                (sync=True, metasync=True; optional)
    RocksDB  db.write(WriteBatch, sync=True)             (rocksdict, zstd; optional)
    raw      os.write(chunk) [+ fsync]                   (the same logical bytes, one file)

Optional peers are skipped with a note when their package is not importable. Not a test: nothing
asserts; results that disagree with the generator's ground truth are flagged in the table.
See benchmarks/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata as md
import json
import os
import platform
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as wl

import lamina

MB = 1e6
PERF = time.perf_counter
TAGS = wl.TAG_NAMES
INT_TAGS = {"status", "customer"}

# name, (target text, predicate on the Lamina value) -- the team's targets, 2 cores, 300k spans
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "ingest_sps": (">= 260,000", lambda v: v >= 260_000),
    "flush_ratio": ("<= 2.0", lambda v: v <= 2.0),
    "disk_final_mb": ("<= 35", lambda v: v <= 35),
    "merge_pct_raw": (">= 30 %", lambda v: v >= 30),
    "lookup_p50_us": ("<= 100", lambda v: v <= 100),
    "query_med_ms": ("<= 25", lambda v: v <= 25),
}

# (key, label, unit/format, better: "hi" | "lo" | None)
ROWS: list[tuple[str, str, str]] = [
    ("ingest_sps", "durable ingest, spans/s", "int"),
    ("ingest_mbs", "ingest, MB/s logical", "f1"),
    ("ingest_cpu_s", "ingest CPU time (all threads), s", "f2"),
    ("ack_p50_ms", "batch ack (write + durable call) p50, ms", "f1"),
    ("commit_p50_ms", "flush / durable call p50, ms", "f1"),
    ("commit_p99_ms", "flush / durable call p99, ms", "f1"),
    ("flush_ratio", "flush / durable call p99 ÷ p50", "f2"),
    ("wamp", "write amplification during ingest", "f2"),
    ("disk_ingest_mb", "on disk after ingest, MB", "f1"),
    ("merge_s", "merge / compaction, s", "f2"),
    ("merge_cpu_s", "merge / compaction CPU time, s", "f2"),
    ("merge_in_mbs", "merge input, MB/s", "f1"),
    ("merge_pct_raw", "merge MB/s as % of raw disk MB/s (faster raw mode)", "pct"),
    ("disk_final_mb", "on disk after merge, MB", "f1"),
    ("lookup_pre_p50_us", "trace lookup before merge p50, µs", "int"),
    ("lookup_p50_us", "trace lookup p50, µs", "int"),
    ("lookup_p99_us", "trace lookup p99, µs", "int"),
    ("query_med_ms", "last 5 % + service=X median, ms", "f1"),
    ("query_rows", "  rows per query (mean)", "int"),
    ("raw_fsync_each_mbs", "raw write + fsync per batch, MB/s", "f1"),
    ("raw_stream_mbs", "raw write, one fsync at end, MB/s", "f1"),
    ("verified", "results match ground truth", "str"),
]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def pct(xs: Iterable[float], q: float) -> float:
    a = np.asarray(list(xs), dtype=float)
    return float(np.percentile(a, q)) if a.size else float("nan")


def dir_bytes(path: str | Path) -> int:
    total = 0
    for f in Path(path).rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if f.is_file():
                total += f.lstat().st_size
    return total


def io_write_bytes() -> int:
    """Bytes this process (all threads) caused to be sent to storage (Linux /proc/self/io)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def busy_cpu_s() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat; NaN elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def be64(v: int) -> bytes:
    return struct.pack(">Q", v)


@dataclass
class Ctx:
    w: wl.Workload
    batch: int
    write_batch: int
    lookup_idx: list[int]  # trace indices to look up
    services: list[str]  # [warm-up, X1..Xk]
    qrange: tuple[int, int]
    expected_spans: np.ndarray  # per trace index
    expected_q: dict[str, int]
    max_slow_lookups: int

    def bounds(self) -> list[tuple[int, int]]:
        n = self.w.n
        return [(a, min(n, a + self.batch)) for a in range(0, n, self.batch)]


@dataclass
class Result:
    name: str
    m: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    mismatches: int = 0
    checks: int = 0


def timed_lookups(
    ctx: Ctx, res: Result, fn: Callable[[bytes], list[Any]], key: str, limit: int | None = None
) -> None:
    """One untimed pass (warm), then a timed pass; p50/p99 in µs; checks span counts."""
    idx = ctx.lookup_idx[: limit or len(ctx.lookup_idx)]
    tids = [ctx.w.trace_ids[i] for i in idx]
    for t in tids:
        fn(t)
    lat = []
    for i, t in zip(idx, tids, strict=True):
        t0 = PERF()
        got = fn(t)
        lat.append(PERF() - t0)
        res.checks += 1
        if len(got) != ctx.expected_spans[i]:
            res.mismatches += 1
    res.m[f"{key}_p50_us"] = pct(lat, 50) * 1e6
    res.m[f"{key}_p99_us"] = pct(lat, 99) * 1e6
    if limit and limit < len(ctx.lookup_idx):
        res.notes.append(
            f"lookups: {limit} traces, not {len(ctx.lookup_idx)} (no trace-ID index; a lookup scans)"
        )


def timed_queries(ctx: Ctx, res: Result, fn: Callable[[int, int, str], list[Any]]) -> None:
    lo, hi = ctx.qrange
    fn(lo, hi, ctx.services[0])  # warm-up, not timed
    lat, rows = [], []
    for svc in ctx.services[1:]:
        t0 = PERF()
        got = fn(lo, hi, svc)
        lat.append(PERF() - t0)
        rows.append(len(got))
        res.checks += 1
        if len(got) != ctx.expected_q[svc]:
            res.mismatches += 1
    res.m["query_med_ms"] = statistics.median(lat) * 1e3
    res.m["query_rows"] = float(np.mean(rows))


def ingest_loop(ctx: Ctx, res: Result, write: Callable[[int, int], Any], commit: Callable[[], Any]) -> None:
    """Feed every batch: write(a, b) then the durable commit(); time both."""
    ack, com = [], []
    gc.collect()
    wb0 = io_write_bytes()
    cpu0 = time.process_time()
    t_start = PERF()
    for a, b in ctx.bounds():
        t0 = PERF()
        write(a, b)
        t1 = PERF()
        commit()
        t2 = PERF()
        ack.append(t2 - t0)
        com.append(t2 - t1)
    elapsed = PERF() - t_start
    res.m["ingest_cpu_s"] = time.process_time() - cpu0
    wb1 = io_write_bytes()
    res.m["ingest_s"] = elapsed
    res.m["ingest_sps"] = ctx.w.n / elapsed
    res.m["ingest_mbs"] = ctx.w.logical_bytes / MB / elapsed
    res.m["ack_p50_ms"] = pct(ack, 50) * 1e3
    res.m["commit_p50_ms"] = pct(com, 50) * 1e3
    res.m["commit_p99_ms"] = pct(com, 99) * 1e3
    res.m["flush_ratio"] = res.m["commit_p99_ms"] / res.m["commit_p50_ms"]
    res.m["first_commit_ms"] = com[0] * 1e3
    if len(com) > 2:
        rest = com[1:]
        res.m["flush_ratio_rest"] = pct(rest, 99) / pct(rest, 50)
    res.m["write_s"] = sum(ack) - sum(com)
    res.m["commit_s"] = sum(com)
    if wb0 >= 0 and wb1 >= 0:
        res.m["wamp"] = (wb1 - wb0) / ctx.w.logical_bytes


def timed_merge(
    ctx: Ctx,
    res: Result,
    path: str,
    merge: Callable[[], Any],
    input_bytes: int | None = None,
    *,
    rewrites: bool = True,
) -> None:
    """Time the engine's merge/compaction. `rewrites`: it reads and rewrites the data (else its
    MB/s is not a merge throughput and is not reported)."""
    before = dir_bytes(path) if input_bytes is None else input_bytes
    gc.collect()
    t0 = PERF()
    c0 = time.process_time()
    merge()
    res.m["merge_cpu_s"] = time.process_time() - c0
    dt = PERF() - t0
    res.m["merge_s"] = dt
    if rewrites:
        res.m["merge_in_mb"] = before / MB
        res.m["merge_in_mbs"] = before / MB / dt if dt > 0 else float("nan")
    res.m["disk_final_mb"] = dir_bytes(path) / MB


# ---------------------------------------------------------------------------------------------
# raw disk baseline
# ---------------------------------------------------------------------------------------------
def raw_chunks(ctx: Ctx) -> list[bytes]:
    w = ctx.w
    return [b"".join(w.raw_record(i) for i in range(a, b)) for a, b in ctx.bounds()]


def run_raw(ctx: Ctx, root: Path, chunks: list[bytes], tries: int = 3) -> Result:
    """Write the workload's logical bytes sequentially to one file, `tries` times per mode:
    fsync after every batch (the durable-ingest analogue) and one fsync at the end (streaming,
    the merge analogue). Medians per mode; the disk bandwidth is the faster mode's."""
    res = Result("raw disk")
    total = sum(map(len, chunks))
    for mode in ("fsync_each", "stream"):
        times = []
        for k in range(tries):
            path = root / f"raw-{mode}-{k}.bin"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                fsync_dir(root)
                t0 = PERF()
                for c in chunks:
                    view = memoryview(c)
                    while view:
                        view = view[os.write(fd, view) :]
                    if mode == "fsync_each":
                        os.fsync(fd)
                os.fsync(fd)
                times.append(PERF() - t0)
            finally:
                os.close(fd)
                path.unlink()
        dt = statistics.median(times)
        res.m[f"raw_{mode}_mbs"] = total / MB / dt
        if mode == "fsync_each":
            res.m["ingest_sps"] = ctx.w.n / dt
            res.m["ingest_mbs"] = total / MB / dt
            res.m["disk_ingest_mb"] = total / MB
    res.m["disk_mbs"] = max(res.m["raw_fsync_each_mbs"], res.m["raw_stream_mbs"])
    return res


# ---------------------------------------------------------------------------------------------
# Lamina
# ---------------------------------------------------------------------------------------------
def _fsync_counts() -> tuple[int, float]:
    try:
        from lamina.io.durable import FSYNC_STATS  # internal: diagnostics only

        return sum(FSYNC_STATS.count.values()), sum(FSYNC_STATS.seconds.values())
    except Exception:
        return -1, float("nan")


def lamina_ingest(ctx: Ctx, traces: Any, res: Result) -> None:
    w, wbatch = ctx.w, ctx.write_batch

    def write(a: int, b: int) -> None:
        for c in range(a, b, wbatch):
            traces.write(w.batch(c, min(b, c + wbatch)))

    n0, s0 = _fsync_counts()
    ingest_loop(ctx, res, write, traces.flush)
    n1, s1 = _fsync_counts()
    if n0 >= 0:
        res.m["fsyncs_per_flush"] = (n1 - n0) / len(ctx.bounds())
        res.m["fsync_s"] = s1 - s0


def lamina_lookup(traces: Any) -> Callable[[bytes], list[Any]]:
    return lambda tid: traces.query(trace_ids=[tid])


def lamina_query(traces: Any) -> Callable[[int, int, str], list[Any]]:
    return lambda lo, hi, svc: traces.query(start=lo, end=hi, tags={"service": svc})


def run_lamina(ctx: Ctx, root: Path) -> Result:
    res = Result("Lamina")
    path = str(root / "lamina")
    store = lamina.open(path, background=False)
    try:
        traces = store.engine("trace")
        lamina_ingest(ctx, traces, res)
        st = store.stats().engines["trace"]
        res.m["parts_after_ingest"] = st.parts
        res.m["disk_ingest_mb"] = dir_bytes(path) / MB
        timed_lookups(ctx, res, lamina_lookup(traces), "lookup_pre")
        timed_merge(ctx, res, path, traces.merge_now, input_bytes=st.bytes)
        st2 = store.stats().engines["trace"]
        res.m["parts_after_merge"] = st2.parts
        if st2.rows != ctx.w.n:
            res.mismatches += 1
            res.notes.append(f"stats().rows = {st2.rows} after merge, expected {ctx.w.n}")
        timed_lookups(ctx, res, lamina_lookup(traces), "lookup")
        timed_queries(ctx, res, lamina_query(traces))
    finally:
        store.close()
    return res


# ---------------------------------------------------------------------------------------------
# SQLite (stdlib): WAL + synchronous=FULL, one transaction per batch
# ---------------------------------------------------------------------------------------------
SQL_COLS = "trace_id, span_id, ts, duration, payload, " + ", ".join(f'"{t}"' for t in TAGS)


def run_sqlite(ctx: Ctx, root: Path) -> Result:
    res = Result("SQLite")
    d = root / "sqlite"
    d.mkdir()
    db = str(d / "spans.db")
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        tag_defs = ", ".join(f'"{t}" {"INTEGER" if t in INT_TAGS else "TEXT"}' for t in TAGS)
        con.execute(
            f"CREATE TABLE spans (trace_id BLOB NOT NULL, span_id BLOB NOT NULL, ts INTEGER NOT NULL, "
            f"duration INTEGER NOT NULL, payload BLOB NOT NULL, {tag_defs})"
        )
        con.execute("CREATE INDEX spans_trace ON spans(trace_id)")
        con.execute("CREATE INDEX spans_ts ON spans(ts)")
        w = ctx.w
        insert = f"INSERT INTO spans ({SQL_COLS}) VALUES ({', '.join('?' * (5 + len(TAGS)))})"
        tagcols = [w.tags[t] for t in TAGS]

        def write(a: int, b: int) -> None:
            con.execute("BEGIN")
            con.executemany(
                insert,
                zip(
                    w.trace_id[a:b],
                    w.span_id[a:b],
                    w.timestamp[a:b].tolist(),
                    w.duration[a:b].tolist(),
                    w.payload[a:b],
                    *(c[a:b] for c in tagcols),
                    strict=True,
                ),
            )

        ingest_loop(ctx, res, write, lambda: con.execute("COMMIT"))
        res.m["disk_ingest_mb"] = dir_bytes(d) / MB
        sel_trace = f"SELECT {SQL_COLS} FROM spans WHERE trace_id = ?"
        lookup = lambda tid: con.execute(sel_trace, (tid,)).fetchall()  # noqa: E731
        timed_lookups(ctx, res, lookup, "lookup_pre")
        timed_merge(ctx, res, str(d), lambda: con.execute("PRAGMA wal_checkpoint(TRUNCATE)"), rewrites=False)
        sel_q = f"SELECT {SQL_COLS} FROM spans WHERE ts >= ? AND ts < ? AND service = ? ORDER BY ts"
        timed_lookups(ctx, res, lookup, "lookup")
        timed_queries(ctx, res, lambda lo, hi, svc: con.execute(sel_q, (lo, hi, svc)).fetchall())
        res.notes.append("merge = PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return res


# ---------------------------------------------------------------------------------------------
# Parquet (pyarrow): one file per batch, temp + fsync + rename + dir fsync; compaction = one file
# ---------------------------------------------------------------------------------------------
def run_parquet(ctx: Ctx, root: Path) -> Result:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    res = Result("Parquet")
    d = root / "parquet"
    d.mkdir()
    fsync_dir(root)
    w = ctx.w
    schema = pa.schema(
        [
            ("trace_id", pa.binary()),
            ("span_id", pa.binary()),
            ("ts", pa.int64()),
            ("duration", pa.int64()),
            ("payload", pa.binary()),
        ]
        + [(t, pa.int64() if t in INT_TAGS else pa.string()) for t in TAGS]
    )
    seq = [0]
    pending: list[Any] = []

    def write(a: int, b: int) -> None:
        cols = [w.trace_id[a:b], w.span_id[a:b], w.timestamp[a:b], w.duration[a:b], w.payload[a:b]]
        cols += [w.tags[t][a:b] for t in TAGS]
        pending.append(
            pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)], schema=schema
            )
        )

    def durable_file(table: Any, final: Path, **kw: Any) -> None:
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd", **kw)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(final)
        fsync_dir(final.parent)

    def commit() -> None:
        table = pending.pop()
        durable_file(table, d / f"part-{seq[0]:06d}.parquet")
        seq[0] += 1

    ingest_loop(ctx, res, write, commit)
    res.m["disk_ingest_mb"] = dir_bytes(d) / MB
    cols = ["trace_id", "span_id", "ts", "duration", "payload", *TAGS]

    def lookup_fn() -> Callable[[bytes], list[Any]]:
        dataset = ds.dataset(str(d), format="parquet")
        return lambda tid: dataset.to_table(columns=cols, filter=ds.field("trace_id") == tid).to_pylist()

    slow = min(ctx.max_slow_lookups, len(ctx.lookup_idx))
    timed_lookups(ctx, res, lookup_fn(), "lookup_pre", limit=slow)

    def compact() -> None:
        files = sorted(d.glob("part-*.parquet"))
        table = pa.concat_tables([pq.read_table(f) for f in files])
        durable_file(table, d / "merged.parquet", row_group_size=ctx.batch)
        for f in files:
            f.unlink()
        fsync_dir(d)

    timed_merge(ctx, res, str(d), compact)
    timed_lookups(ctx, res, lookup_fn(), "lookup", limit=slow)
    dataset = ds.dataset(str(d), format="parquet")

    def query(lo: int, hi: int, svc: str) -> list[Any]:
        f = (ds.field("ts") >= lo) & (ds.field("ts") < hi) & (ds.field("service") == svc)
        return dataset.to_table(columns=cols, filter=f).sort_by("ts").to_pylist()

    timed_queries(ctx, res, query)
    res.notes.append("merge = rewrite all batch files as one file (row groups of one batch)")
    return res


# ---------------------------------------------------------------------------------------------
# key-value peers: primary key trace_id|ts|span_id -> value; index ts|trace_id|span_id -> service
# ---------------------------------------------------------------------------------------------
_SEP = "\x1f"


def kv_encode(w: wl.Workload, i: int, tagcols: list[list[Any]]) -> bytes:
    tags = _SEP.join(str(c[i]) for c in tagcols).encode()
    return struct.pack("<qH", int(w.duration[i]), len(tags)) + tags + w.payload[i]


def kv_decode(key: bytes, value: bytes) -> tuple[Any, ...]:
    dur, n = struct.unpack_from("<qH", value)
    tags = value[10 : 10 + n].decode().split(_SEP)
    for j, t in enumerate(TAGS):
        if t in INT_TAGS:
            tags[j] = int(tags[j])
    ts = struct.unpack(">Q", key[16:24])[0]
    return (key[:16], key[24:], ts, dur, value[10 + n :], *tags)


def kv_batch(w: wl.Workload, a: int, b: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    tagcols = [w.tags[t] for t in TAGS]
    svc = w.tags["service"]
    prim, idx = [], []
    ts = w.timestamp[a:b].tolist()
    for i, t in zip(range(a, b), ts, strict=True):
        tb = be64(t)
        prim.append((w.trace_id[i] + tb + w.span_id[i], kv_encode(w, i, tagcols)))
        idx.append((tb + w.trace_id[i] + w.span_id[i], svc[i].encode()))
    return prim, idx


def run_lmdb(ctx: Ctx, root: Path) -> Result:
    import lmdb

    res = Result("LMDB")
    d = root / "lmdb"
    d.mkdir()
    env = lmdb.open(str(d), map_size=16 << 30, max_dbs=2, sync=True, metasync=True, writemap=False)
    try:
        spans = env.open_db(b"spans")
        by_ts = env.open_db(b"by_ts")
        w = ctx.w
        pending: list[Any] = []

        def write(a: int, b: int) -> None:
            prim, idx = kv_batch(w, a, b)
            txn = env.begin(write=True)
            txn.cursor(spans).putmulti(prim)
            txn.cursor(by_ts).putmulti(idx)
            pending.append(txn)

        ingest_loop(ctx, res, write, lambda: pending.pop().commit())
        res.m["disk_ingest_mb"] = dir_bytes(d) / MB

        def lookup(tid: bytes) -> list[Any]:
            out = []
            with env.begin(db=spans) as txn:
                cur = txn.cursor()
                if cur.set_range(tid):
                    for k, v in cur:
                        if not k.startswith(tid):
                            break
                        out.append(kv_decode(k, v))
            return out

        def query(lo: int, hi: int, svc: str) -> list[Any]:
            want, end, out = svc.encode(), be64(hi), []
            with env.begin() as txn:
                cur = txn.cursor(by_ts)
                if cur.set_range(be64(lo)):
                    for k, v in cur:
                        if k >= end:
                            break
                        if v == want:
                            pk = k[8:24] + k[:8] + k[24:]
                            out.append(kv_decode(pk, txn.get(pk, db=spans)))
            return out

        timed_lookups(ctx, res, lookup, "lookup_pre")
        timed_merge(ctx, res, str(d), lambda: env.sync(True), rewrites=False)
        timed_lookups(ctx, res, lookup, "lookup")
        timed_queries(ctx, res, query)
        res.notes.append("merge = env.sync() (a B+tree: nothing to merge)")
    finally:
        env.close()
    return res


def run_rocksdb(ctx: Ctx, root: Path) -> Result:
    from rocksdict import DBCompressionType, Options, Rdict, WriteBatch, WriteOptions

    res = Result("RocksDB")
    d = root / "rocksdb"
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_compression_type(DBCompressionType.zstd())
    db = Rdict(str(d), opts)
    try:
        cf_ts = db.create_column_family("by_ts", opts)
        h_ts = db.get_column_family_handle("by_ts")
        wo = WriteOptions()
        wo.sync = True
        w = ctx.w
        pending: list[Any] = []

        def write(a: int, b: int) -> None:
            prim, idx = kv_batch(w, a, b)
            wb = WriteBatch(raw_mode=True)
            for k, v in prim:
                wb.put(k, v)
            for k, v in idx:
                wb.put(k, v, h_ts)
            pending.append(wb)

        ingest_loop(ctx, res, write, lambda: db.write(pending.pop(), wo))
        res.m["disk_ingest_mb"] = dir_bytes(d) / MB

        def lookup(tid: bytes) -> list[Any]:
            out = []
            it = db.iter()
            it.seek(tid)
            while it.valid():
                k = it.key()
                if not k.startswith(tid):
                    break
                out.append(kv_decode(k, it.value()))
                it.next()
            return out

        def query(lo: int, hi: int, svc: str) -> list[Any]:
            want, end, out = svc.encode(), be64(hi), []
            it = cf_ts.iter()
            it.seek(be64(lo))
            keys = []
            while it.valid():
                k = it.key()
                if k >= end:
                    break
                if it.value() == want:
                    keys.append(k[8:24] + k[:8] + k[24:])
                it.next()
            for pk, v in zip(keys, db.get(keys), strict=True):
                out.append(kv_decode(pk, v))
            return out

        timed_lookups(ctx, res, lookup, "lookup_pre")

        def compact() -> None:
            db.flush()
            cf_ts.flush()
            db.compact_range(None, None)
            cf_ts.compact_range(None, None)

        timed_merge(ctx, res, str(d), compact)
        timed_lookups(ctx, res, lookup, "lookup")
        timed_queries(ctx, res, query)
        res.notes.append("merge = flush memtables + compact_range on both column families")
    finally:
        db.close()
    return res


PEERS: dict[str, tuple[str, Callable[[Ctx, Path], Result]]] = {
    "sqlite": ("sqlite3", run_sqlite),
    "parquet": ("pyarrow", run_parquet),
    "lmdb": ("lmdb", run_lmdb),
    "rocksdb": ("rocksdict", run_rocksdb),
}


# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------
def fmt(v: Any, kind: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if kind == "str":
        return str(v)
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "f1":
        return f"{v:,.1f}"
    if kind == "f2":
        return f"{v:,.2f}"
    if kind == "pct":
        return f"{v:.0f} %"
    return str(v)


TIMES = "\u00d7"  # multiplication sign


def ratio(r: float) -> str:
    return f"{r:,.0f}{TIMES}" if r >= 10 else f"{r:.2g}{TIMES}"


def median_results(runs: list[Result]) -> Result:
    out = Result(runs[0].name)
    keys = {k for r in runs for k in r.m}
    for k in keys:
        vals = [r.m[k] for r in runs if k in r.m and isinstance(r.m[k], int | float)]
        if vals:
            out.m[k] = statistics.median(vals)
    out.mismatches = sum(r.mismatches for r in runs)
    out.checks = sum(r.checks for r in runs)
    out.notes = list(dict.fromkeys(n for r in runs for n in r.notes))
    return out


def render(results: list[Result], raw: Result | None) -> str:
    lam = next(r for r in results if r.name == "Lamina")
    raw_mbs = raw.m.get("disk_mbs") if raw else None
    for r in results:
        if raw_mbs and "merge_in_mbs" in r.m:
            r.m["merge_pct_raw"] = 100 * r.m["merge_in_mbs"] / raw_mbs
        r.m["verified"] = (
            ("yes" if r.mismatches == 0 else f"NO: {r.mismatches}/{r.checks} wrong") if r.checks else None
        )
    cols = (
        ["metric", "target", "Lamina"]
        + [r.name for r in results if r is not lam]
        + (["raw disk"] if raw else [])
    )
    table: list[list[str]] = []
    for key, label, kind in ROWS:
        v = lam.m.get(key)
        cell = fmt(v, kind)
        tgt = TARGETS.get(key)
        if tgt and isinstance(v, float | int):
            cell += " ✓" if tgt[1](v) else " ✗"
        row = [label, tgt[0] if tgt else "", cell]
        for r in results:
            if r is lam:
                continue
            pv = r.m.get(key)
            c = fmt(pv, kind)
            if (
                kind != "str"
                and isinstance(pv, float | int)
                and isinstance(v, float | int)
                and v
                and key != "merge_pct_raw"
            ):
                c += f" ({ratio(pv / v)})"
            row.append(c)
        if raw:
            row.append(fmt(raw.m.get(key), kind))
        if all(c in ("—", "") for c in row[2:]):
            continue
        table.append(row)
    widths = [max(len(c) for c in col) for col in zip(cols, *table, strict=True)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "| " + " | ".join(c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in pairs) + " |"

    out = [
        line(cols),
        "|"
        + "|".join(("-" * (wd + 2)) if i == 0 else ("-" * (wd + 1) + ":") for i, wd in enumerate(widths))
        + "|",
    ]
    out += [line(r) for r in table]
    return "\n".join(out)


def versions(have: dict[str, bool]) -> str:
    def v(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "?"

    parts = [
        f"Python {platform.python_version()}",
        f"lamina {lamina.__version__}",
        f"lamina-trace {v('lamina-trace')}",
        f"numpy {np.__version__}",
        f"zstandard {v('zstandard')}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if have.get("parquet"):
        parts.append(f"pyarrow {v('pyarrow')}")
    if have.get("lmdb"):
        import lmdb

        parts.append(f"lmdb {v('lmdb')} (liblmdb {'.'.join(map(str, lmdb.version()))})")
    if have.get("rocksdb"):
        parts.append(f"rocksdict {v('rocksdict')}")
    return ", ".join(parts)


def machine(path: Path) -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 0
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    except OSError:
        pass
    fs = "?"
    try:
        best = ""
        real = os.path.realpath(path)
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, typ = line.split()[:3]
            if real.startswith(mnt) and len(mnt) >= len(best):
                best, fs = mnt, f"{typ} on {dev}"
    except OSError:
        pass
    return f"{ncpu} CPUs ({cpu}), {mem} RAM, {platform.system()} {platform.release()}, data dir {path} ({fs})"


# ---------------------------------------------------------------------------------------------
# profiling (Lamina only, its own fresh directory, after the table)
# ---------------------------------------------------------------------------------------------
# Internal functions timed by `ingest_breakdown` (module, attribute[.method]). Internal names may
# change: missing ones are skipped. Timers nest (add_block includes the granule flushes it
# triggers), so the shares overlap and do not add up to 100 %.
BREAKDOWN = [
    ("lamina.batch", "_tags_column"),
    ("lamina.table", "sort_rows"),
    ("lamina.table", "tags_for_rows"),
    ("lamina.table", "Table._maybe_train_dictionary"),
    ("lamina.format.part_writer", "PartWriter.add_block"),
    ("lamina.format.part_writer", "PartWriter.add_rows"),
    ("lamina.format.part_writer", "PartWriter._flush_granule"),
    ("lamina.format.part_writer", "PartWriter.finish"),
    ("lamina.format.compression", "compress_many"),
    ("lamina.format.part_reader", "decode_tag_meta"),
    ("lamina.table", "write_mem_part"),
    ("lamina.table", "Table._commit"),
]


def ingest_breakdown(ctx: Ctx, root: Path) -> str:
    """Wall-clock time inside selected core functions during one ingest (plain timers around
    them: no profiler overhead, so Python-call-heavy code is not inflated)."""
    import importlib

    acc: dict[str, float] = {}
    undo: list[tuple[Any, str, Any]] = []

    def timed(label: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def g(*a: Any, **k: Any) -> Any:
            t0 = PERF()
            try:
                return f(*a, **k)
            finally:
                acc[label] = acc.get(label, 0.0) + PERF() - t0

        return g

    for modname, attr in BREAKDOWN:
        try:
            owner: Any = importlib.import_module(modname)
            *outer, name = attr.split(".")
            for o in outer:
                owner = getattr(owner, o)
            f = getattr(owner, name)
        except (ImportError, AttributeError):
            continue
        undo.append((owner, name, f))
        setattr(owner, name, timed(f"{modname.split('.')[-1]}.{attr}", f))
    path = str(root / "lamina-breakdown")
    try:
        with lamina.open(path, background=False) as store:
            res = Result("b")
            lamina_ingest(ctx, store.engine("trace"), res)
    finally:
        for owner, name, f in reversed(undo):
            setattr(owner, name, f)
        shutil.rmtree(path, ignore_errors=True)
    total = res.m["ingest_s"]
    head = f"{total:.2f}s, {res.m['ingest_sps']:,.0f} spans/s (timers nest)"
    lines = [f"\n=== ingest wall-clock breakdown: {head} ==="]
    lines += [
        f"  {k:44s} {v:6.2f}s {100 * v / total:5.1f} %" for k, v in sorted(acc.items(), key=lambda kv: -kv[1])
    ]
    return "\n".join(lines)


def profile_lamina(ctx: Ctx, root: Path, profiler: str, top: int) -> str:
    out: list[str] = [ingest_breakdown(ctx, root)]
    path = str(root / "lamina-profile")
    store = lamina.open(path, background=False)
    try:
        traces = store.engine("trace")
        lookup, query = lamina_lookup(traces), lamina_query(traces)
        lo, hi = ctx.qrange
        tids = [ctx.w.trace_ids[i] for i in ctx.lookup_idx]

        def phase_ingest() -> None:
            lamina_ingest(ctx, traces, Result("p"))

        def phase_merge() -> None:
            traces.merge_now()

        def phase_lookup() -> None:
            for t in tids:
                lookup(t)

        def phase_query() -> None:
            for s in ctx.services[1:]:
                query(lo, hi, s)

        phases = [
            ("ingest (write + flush, all batches)", phase_ingest, None),
            ("merge_now()", phase_merge, None),
            (f"trace lookup x{len(tids)} (warm)", phase_lookup, phase_lookup),
            (
                f"last 5 % + service query x{len(ctx.services) - 1} (warm)",
                phase_query,
                lambda: query(lo, hi, ctx.services[0]),
            ),
        ]
        for title, fn, warm in phases:
            if warm is not None:
                warm()
            out.append(f"\n=== profile: {title} ({profiler}) ===")
            out.append(_run_profiled(fn, profiler, top))
    finally:
        store.close()
    return "\n".join(out)


def _run_profiled(fn: Callable[[], None], profiler: str, top: int) -> str:
    if profiler == "pyinstrument":
        try:
            from pyinstrument import Profiler
        except ImportError:
            profiler = "cprofile"
        else:
            p = Profiler(interval=0.0005)
            p.start()
            fn()
            p.stop()
            return p.output_text(unicode=True, color=False, show_all=False)
    import cProfile
    import io
    import pstats

    pr = cProfile.Profile()
    t0 = PERF()
    pr.enable()
    fn()
    pr.disable()
    wall = PERF() - t0
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf)
    st.sort_stats("cumulative").print_stats(top)
    lines = buf.getvalue().splitlines()
    # drop pstats' preamble up to the column header, keep it compact
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0)
    body = [
        ln.replace(str(Path(lamina.__file__).parent.parent), "core/src") for ln in lines[start:] if ln.strip()
    ]
    return f"wall {wall:.3f}s under cProfile; top {top} by cumulative time\n" + "\n".join(body)


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--spans", type=int, default=300_000)
    ap.add_argument("--quick", action="store_true", help="30,000 spans (smoke check)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per engine; the table shows medians")
    ap.add_argument("--batch", type=int, default=10_000, help="spans per durable commit (every engine)")
    ap.add_argument("--write-batch", type=int, default=10_000, help="spans per Lamina write() call")
    ap.add_argument("--lookups", type=int, default=2_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument(
        "--slow-lookups",
        type=int,
        default=50,
        help="lookups for peers without a trace-ID index (Parquet scans every file)",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--peers", default="sqlite,parquet,lmdb,rocksdb", help="comma list, or 'none'")
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="do not delete the stores")
    ap.add_argument("--profile", action="store_true", help="also profile Lamina's phases (after the table)")
    ap.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--json", default=None, help="also write the medians to this JSON file")
    args = ap.parse_args(argv)
    n = 30_000 if args.quick else args.spans

    peers: list[tuple[str, Callable[[Ctx, Path], Result]]] = []
    have: dict[str, bool] = {}
    notes: list[str] = []
    wanted = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    for name in wanted:
        if name not in PEERS:
            ap.error(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
        module, fn = PEERS[name]
        try:
            __import__(module)
        except ImportError:
            notes.append(
                f"peer {name} skipped: `{module}` is not installed (python3 -m uv pip install {module})"
            )
            continue
        have[name] = True
        peers.append((name, fn))

    t0 = PERF()
    w = wl.generate(n, args.seed)
    lo, hi = w.last_fraction_range(0.05)
    services = w.query_services(args.queries + 1)
    lookup_idx = w.sample_traces(args.lookups)
    ctx = Ctx(
        w=w,
        batch=args.batch,
        write_batch=args.write_batch,
        lookup_idx=lookup_idx,
        services=services,
        qrange=(lo, hi),
        expected_spans=w.spans_per_trace(),
        expected_q={s: w.expected_range_count(lo, hi, s) for s in services},
        max_slow_lookups=args.slow_lookups,
    )
    chunks = raw_chunks(ctx)
    gen_s = PERF() - t0

    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lamina-bench-", dir=base))
    print(f"# Lamina ingest benchmark — {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    print(f"machine: {machine(root)}")
    print(f"versions: {versions(have)}")
    busy0, own0, wall0 = busy_cpu_s(), own_cpu_s(), PERF()
    print(
        f"workload: {n:,} spans, {len(w.trace_ids):,} traces x {wl.SPANS_PER_TRACE}, "
        f"{w.logical_bytes / MB:.1f} MB logical (payload {sum(map(len, w.payload)) / MB:.1f} MB), "
        f"seed {args.seed}; batches of {args.batch:,} spans "
        f"({len(ctx.bounds())} durable commits); generated in {gen_s:.1f}s (not timed)"
    )
    print(
        f"reads: {len(lookup_idx):,} trace lookups (warm), {args.queries} queries [last 5 % = "
        f"{(hi - lo) / 1e9:.0f}s] with different services; repeat={args.repeat} (medians)",
        flush=True,
    )
    for note in notes:
        print(f"note: {note}")

    runs: dict[str, list[Result]] = {}
    try:
        for rep in range(args.repeat):
            order: list[tuple[str, Callable[[Ctx, Path], Result]]] = [("lamina", run_lamina), *peers]
            rdir = root / f"run{rep}"
            rdir.mkdir()
            runs.setdefault("raw", []).append(run_raw(ctx, rdir, chunks))
            for name, fn in order:
                t = PERF()
                print(f"  run {rep + 1}/{args.repeat}: {name} ...", end="", flush=True, file=sys.stderr)
                runs.setdefault(name, []).append(fn(ctx, rdir))
                print(f" {PERF() - t:.1f}s", file=sys.stderr, flush=True)
                gc.collect()
            if not args.keep:
                shutil.rmtree(rdir, ignore_errors=True)
        med = {k: median_results(v) for k, v in runs.items()}
        raw = med.pop("raw")
        results = [med["lamina"]] + [med[name] for name, _ in peers]
        print()
        print(render(results, raw))
        print()
        lam = med["lamina"]
        g = lambda k: lam.m.get(k, float("nan"))  # noqa: E731
        print(
            f"Lamina detail: write() {g('write_s'):.2f}s + flush() {g('commit_s'):.2f}s "
            f"of {g('ingest_s'):.2f}s ingest; {g('fsyncs_per_flush'):.0f} fsyncs per flush "
            f"({g('fsync_s'):.2f}s in fsync); parts {g('parts_after_ingest'):.0f} -> "
            f"{g('parts_after_merge'):.0f}; merge read {g('merge_in_mb'):.1f} MB; first flush "
            f"{g('first_commit_ms'):.0f} ms (trains the zstd dictionary), p99/p50 without it "
            f"{g('flush_ratio_rest'):.2f}"
        )
        for r in results:
            for note in r.notes:
                print(f"note ({r.name}): {note}")
        print(
            f"(x) = peer ÷ Lamina; ✓/✗ = Lamina against the target; p99 of {len(ctx.bounds())} flushes "
            "≈ the slowest one."
        )
        others = (busy_cpu_s() - busy0) - (own_cpu_s() - own0)
        share = 100 * others / (PERF() - wall0)
        busy = " — the machine was busy: timings are inflated and noisy" if share > 10 else ""
        print(f"other processes used {others:.0f} CPU-s during the runs ({share:.0f} % of one core){busy}")
        if args.json:
            Path(args.json).write_text(
                json.dumps({r.name: r.m for r in [*results, raw]}, indent=1, default=str)
            )
        if args.profile:
            print(profile_lamina(ctx, root, args.profiler, args.profile_top))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
