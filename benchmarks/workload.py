"""Seeded, deterministic synthetic trace workload shared by the benchmarks.

`generate(n_spans, seed)` builds every column once, up front (nothing here is timed):

- traces of 10 spans; 16-byte random trace IDs, 8-byte random span IDs;
- start timestamps (ns) over a 1-hour window: trace roots uniform over the hour, child spans a
  few ms to ~1 s after their root; spans are emitted in start order plus 0-5 ms of arrival
  jitter, so timestamps increase over the stream but not strictly (a trace's spans interleave
  with its neighbours' and a few traces straddle batch boundaries, as with real collectors);
- durations (ns), log-normal around 2 ms;
- 8 tags of mixed cardinality and type: service 50 (str, skewed), operation 500 (str, skewed),
  status 3 (int), method 5, region 4, host 200, user 10^4 (str), customer 10^4 (int);
- payloads of 200-500 bytes of compressible JSON-ish text.

"Logical bytes" of a span (what MB/s figures divide by) = trace ID (16) + span ID (8) + payload
+ its tags as compact text `name=value,name=value,...`. `raw_record(i)` is exactly those bytes,
which is what the raw-disk baseline writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPANS_PER_TRACE = 10
WINDOW_NS = 3600 * 10**9
# 2026-11-25T10:00:00Z: the hour stays inside one UTC day (Lamina segments are day-aligned).
T0_NS = 1_795_600_800 * 10**9

TAG_NAMES = ("service", "operation", "status", "method", "region", "host", "user", "customer")
CARDINALITY = {
    "service": 50,
    "operation": 500,
    "status": 3,
    "method": 5,
    "region": 4,
    "host": 200,
    "user": 10_000,
    "customer": 10_000,
}

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "request handler cache miss hit retry timeout upstream downstream checkout cart payment "
    "inventory order user session token auth login logout redirect render template query select "
    "insert update delete commit rollback queue publish consume worker batch flush index search "
    "filter sort page limit offset latency error warning info debug trace span grpc http json "
    "proto encode decode serialize compress connection pool acquire release lock wait shard "
    "replica leader follower election heartbeat metrics exporter sampler"
).split()
_RESOURCES = ("orders", "users", "carts", "payments", "items", "sessions", "invoices", "shipments")
_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "grpc-java-netty/1.63.0",
)


@dataclass
class Workload:
    n: int
    seed: int
    trace_id: list[bytes]
    span_id: list[bytes]
    timestamp: np.ndarray  # int64 ns, stream order
    duration: np.ndarray  # int64 ns
    payload: list[bytes]
    tags: dict[str, list[Any]]  # columnar: tag -> one value per span
    tag_codes: dict[str, np.ndarray]  # tag -> index into tag_vocab[tag] (for ground truth)
    tag_vocab: dict[str, list[Any]]
    trace_of: np.ndarray  # trace index of each span (index into trace_ids)
    trace_ids: list[bytes]  # unique trace IDs, by trace index
    span_bytes: np.ndarray = field(repr=False)  # logical bytes of each span

    @property
    def logical_bytes(self) -> int:
        return int(self.span_bytes.sum())

    @property
    def t_min(self) -> int:
        return int(self.timestamp.min())

    @property
    def t_max(self) -> int:
        return int(self.timestamp.max())

    def batch(self, a: int, b: int) -> dict[str, Any]:
        """Columnar batch of spans [a, b) in Lamina's write() shape (tags as columns)."""
        return {
            "trace_id": self.trace_id[a:b],
            "span_id": self.span_id[a:b],
            "timestamp": self.timestamp[a:b],
            "duration": self.duration[a:b],
            "payload": self.payload[a:b],
            "tags": {t: col[a:b] for t, col in self.tags.items()},
        }

    def tags_text(self, i: int) -> bytes:
        return ",".join(f"{t}={self.tags[t][i]}" for t in TAG_NAMES).encode()

    def raw_record(self, i: int) -> bytes:
        return self.trace_id[i] + self.span_id[i] + self.payload[i] + self.tags_text(i)

    def last_fraction_range(self, fraction: float = 0.05) -> tuple[int, int]:
        """[start, end) covering the last `fraction` of the data's time range."""
        lo, hi = self.t_min, self.t_max + 1
        return hi - int((hi - lo) * fraction), hi

    def expected_range_count(self, start: int, end: int, service: str) -> int:
        code = self.tag_vocab["service"].index(service)
        m = (self.timestamp >= start) & (self.timestamp < end) & (self.tag_codes["service"] == code)
        return int(m.sum())

    def spans_per_trace(self) -> np.ndarray:
        return np.bincount(self.trace_of, minlength=len(self.trace_ids))

    def sample_traces(self, k: int, seed: int | None = None) -> list[int]:
        """`k` distinct random trace indices (seeded; same for every engine)."""
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        k = min(k, len(self.trace_ids))
        return rng.choice(len(self.trace_ids), size=k, replace=False).tolist()

    def query_services(self, k: int) -> list[str]:
        """`k` different services present in the last 5 % (most frequent first)."""
        start, end = self.last_fraction_range()
        m = (self.timestamp >= start) & (self.timestamp < end)
        counts = np.bincount(self.tag_codes["service"][m], minlength=CARDINALITY["service"])
        order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
        vocab = self.tag_vocab["service"]
        return [vocab[order[i % len(order)]] for i in range(k)]


def _zipf_p(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def _vocab() -> dict[str, list[Any]]:
    services = [f"svc-{name}-{i:02d}" for i, name in zip(range(50), (_WORDS * 2)[7:57], strict=True)]
    # operation i belongs to service i // 10
    ops = [
        f"{services[i // 10].split('-')[1]}.{_WORDS[(i * 7) % len(_WORDS)]}_{_RESOURCES[i % 8]}/{i:03d}"
        for i in range(500)
    ]
    return {
        "service": services,
        "operation": ops,
        "status": [200, 404, 500],
        "method": ["GET", "POST", "PUT", "DELETE", "PATCH"],
        "region": ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"],
        "host": [f"ip-10-{i // 50}-{i % 50}-{(i * 37) % 250}.internal" for i in range(200)],
        "user": [f"user-{i:05d}" for i in range(10_000)],
        "customer": list(range(100_000, 110_000)),
    }


def generate(n_spans: int = 300_000, seed: int = 42) -> Workload:
    if n_spans <= 0:
        raise ValueError("n_spans must be positive")
    rng = np.random.default_rng(seed)
    n_traces = math.ceil(n_spans / SPANS_PER_TRACE)
    # --- IDs -------------------------------------------------------------------------------
    tid_raw = rng.bytes(16 * n_traces)
    trace_ids = [tid_raw[i * 16 : i * 16 + 16] for i in range(n_traces)]
    trace_of = np.repeat(np.arange(n_traces), SPANS_PER_TRACE)[:n_spans]
    pos_in_trace = np.tile(np.arange(SPANS_PER_TRACE), n_traces)[:n_spans]
    # --- times -----------------------------------------------------------------------------
    trace_len = np.minimum(rng.lognormal(math.log(50e6), 1.0, n_traces), 1e9).astype(
        np.int64
    )  # ~50 ms, <= 1 s
    root = np.sort(rng.integers(T0_NS, T0_NS + WINDOW_NS - 10**9, n_traces))
    offset = (rng.random(n_spans) * trace_len[trace_of]).astype(np.int64)
    offset[pos_in_trace == 0] = 0
    ts = root[trace_of] + offset
    arrival = ts + rng.integers(0, 5_000_000, n_spans)  # 0-5 ms of collector jitter
    order = np.argsort(arrival, kind="stable")
    ts, trace_of, pos_in_trace = ts[order], trace_of[order], pos_in_trace[order]
    duration = np.maximum(rng.lognormal(math.log(2e6), 1.2, n_spans), 1000).astype(np.int64)
    is_root = pos_in_trace == 0
    duration[is_root] = trace_len[trace_of[is_root]] + duration[is_root] // 10
    span_raw = rng.bytes(8 * n_spans)
    span_ids = [span_raw[i * 8 : i * 8 + 8] for i in range(n_spans)]
    # --- tags ------------------------------------------------------------------------------
    vocab = _vocab()
    codes = {
        "service": rng.choice(50, n_spans, p=_zipf_p(50, 0.8)),
        "status": rng.choice(3, n_spans, p=[0.93, 0.05, 0.02]),
        "method": rng.choice(5, n_spans, p=[0.55, 0.25, 0.1, 0.05, 0.05]),
        "region": rng.integers(0, 4, n_spans),
        "host": rng.choice(200, n_spans, p=_zipf_p(200, 0.5)),
        "user": rng.integers(0, 10_000, n_spans),
        "customer": rng.choice(10_000, n_spans, p=_zipf_p(10_000, 0.7)),
    }
    codes["operation"] = codes["service"] * 10 + rng.choice(10, n_spans, p=_zipf_p(10, 1.0))
    codes = {t: codes[t].astype(np.int64) for t in TAG_NAMES}
    tags = {t: np.asarray(vocab[t], dtype=object)[codes[t]].tolist() for t in TAG_NAMES}
    # --- payloads --------------------------------------------------------------------------
    target = rng.integers(200, 501, n_spans)
    filler = " ".join(rng.choice(_WORDS, 400_000).tolist())
    fill_at = rng.integers(0, len(filler) - 600, n_spans)
    nums = rng.integers(0, 1_000_000, (n_spans, 4)).tolist()
    req_hex = rng.bytes(16 * n_spans).hex()  # a random request ID per span (incompressible)
    res = rng.integers(0, len(_RESOURCES), n_spans).tolist()
    agent = rng.integers(0, len(_AGENTS), n_spans).tolist()
    op, meth, status = tags["operation"], tags["method"], tags["status"]
    payload: list[bytes] = []
    append = payload.append
    for i in range(n_spans):
        a, b, c, d = nums[i]
        r = _RESOURCES[res[i]]
        head = (
            f'{{"name":"{op[i]}","request_id":"{req_hex[32 * i : 32 * i + 32]}",'
            f'"http":{{"method":"{meth[i]}","url":"/api/v1/{r}/{a}","status":{status[i]},"ua":"{_AGENTS[agent[i]]}"}},'
            f'"db":"SELECT id, total FROM {r} WHERE id = {b}","rows":{c % 100},"bytes":{d},"log":"'
        )
        need = int(target[i]) - len(head) - 2
        if need > 0:
            f = int(fill_at[i])
            s = head + filler[f : f + need] + '"}'
        else:
            s = head[: int(target[i]) - 2] + '"}'
        append(s.encode())
    # --- logical bytes ---------------------------------------------------------------------
    tag_bytes = np.full(n_spans, len(TAG_NAMES) - 1, dtype=np.int64)  # commas
    for t in TAG_NAMES:
        lens = np.array([len(str(v).encode()) for v in vocab[t]], dtype=np.int64)
        tag_bytes += len(t) + 1 + lens[codes[t]]
    pay_len = np.fromiter(map(len, payload), dtype=np.int64, count=n_spans)
    span_bytes = 16 + 8 + pay_len + tag_bytes
    return Workload(
        n=n_spans,
        seed=seed,
        trace_id=[trace_ids[t] for t in trace_of.tolist()],
        span_id=span_ids,
        timestamp=ts.astype(np.int64),
        duration=duration,
        payload=payload,
        tags=tags,
        tag_codes=codes,
        tag_vocab=vocab,
        trace_of=trace_of,
        trace_ids=trace_ids,
        span_bytes=span_bytes,
    )


if __name__ == "__main__":  # quick look: python benchmarks/workload.py [n]
    import sys
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    t = time.perf_counter()
    w = generate(n)
    print(
        f"{n} spans in {time.perf_counter() - t:.2f}s; {w.logical_bytes / 1e6:.1f} MB logical; "
        f"payload avg {np.mean([len(p) for p in w.payload]):.0f} B"
    )
    print(w.payload[0].decode())
    print(w.tags_text(0).decode(), len(w.raw_record(0)), int(w.span_bytes[0]))
    print({t: len(set(w.tags[t])) for t in TAG_NAMES})
