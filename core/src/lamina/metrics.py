"""Counters kept by the core, exported through a prometheus_client Collector on request.

Nothing is registered globally at import: creating metric objects per store on the default
REGISTRY breaks the second store a process opens. Applications call
`registry.register(LaminaCollector(store))`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from lamina.io.durable import FSYNC_STATS

_HELP = {
    "lamina_corrupt_parts_total": "Parts found damaged and quarantined",
    "lamina_flushes_total": "Memory parts flushed to disk",
    "lamina_flush_errors_total": "Failed flushes",
    "lamina_flushed_rows_total": "Rows made durable by flushes",
    "lamina_merges_total": "Merges committed",
    "lamina_merge_errors_total": "Failed merge attempts",
    "lamina_merged_parts_total": "Input parts consumed by merges",
    "lamina_written_rows_total": "Rows accepted by write()",
    "lamina_dropped_segments_total": "Segments dropped by retention",
}


class Metrics:
    """Thread-safe labelled counters: name -> {labels tuple: value}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self.counters[name]
            series[key] = series.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        """Sum over series whose labels include `labels`."""
        want = set(labels.items())
        with self._lock:
            return sum(v for k, v in self.counters.get(name, {}).items() if want <= set(k))


class LaminaCollector:
    """prometheus_client custom collector for one store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m: Metrics = self.store.metrics
        with m._lock:
            snapshot = {k: dict(v) for k, v in m.counters.items()}
        for name, series in sorted(snapshot.items()):
            labels = sorted({k for key in series for k, _ in key})
            fam = CounterMetricFamily(name.removesuffix("_total"), _HELP.get(name, name), labels=labels)
            for key, value in series.items():
                d = dict(key)
                fam.add_metric([d.get(lbl, "") for lbl in labels], value)
            yield fam
        fs = CounterMetricFamily("lamina_fsyncs", "fsync calls issued", labels=["kind"])
        secs = CounterMetricFamily("lamina_fsync_seconds", "Time spent in fsync", labels=["kind"])
        for kind, n in FSYNC_STATS.count.items():
            fs.add_metric([kind], n)
            secs.add_metric([kind], FSYNC_STATS.seconds[kind])
        yield fs
        yield secs
        stats = self.store.stats()
        parts = GaugeMetricFamily("lamina_parts", "Live parts", labels=["engine"])
        rows = GaugeMetricFamily("lamina_part_rows", "Rows in live parts", labels=["engine"])
        size = GaugeMetricFamily("lamina_part_bytes", "Bytes in live parts", labels=["engine"])
        quarantined = GaugeMetricFamily("lamina_quarantined_parts", "Parts in corrupt/", labels=["engine"])
        for eng, st in stats.engines.items():
            parts.add_metric([eng], st.parts)
            rows.add_metric([eng], st.rows)
            size.add_metric([eng], st.bytes)
            quarantined.add_metric([eng], st.quarantined)
        qbytes = GaugeMetricFamily("lamina_quarantined_bytes", "Bytes in corrupt/", labels=["engine"])
        per_engine: dict[str, int] = dict.fromkeys(stats.engines, 0)
        for q in self.store.quarantined():
            per_engine[q.engine] = per_engine.get(q.engine, 0) + q.bytes
        for eng, n in per_engine.items():
            qbytes.add_metric([eng], n)
        yield from (parts, rows, size, quarantined, qbytes)
