"""Block skipping is real: selective filters read fewer blocks (counted through `QueryStats`, not
timed), and every skipped block really held no match (results equal a full scan's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lamina
from lamina_stream import And, Eq, In, Or, QueryStats, Range

N_SERIES = 40
PER_SERIES = 30


def _write(streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int) -> None:
    """40 series (one block each per part), each host only ever logs from its own service; one
    service ("rare") logs ERROR lines and large latencies."""
    for part in range(2):
        rows = []
        for s in range(N_SERIES):
            svc = "rare" if s == 7 else f"svc-{s % 5}"
            for k in range(PER_SERIES):
                i = part * PER_SERIES + k
                tags = {
                    "level": "ERROR" if svc == "rare" and k % 3 == 0 else "INFO",
                    "latency_ms": 5000 + k if svc == "rare" else 10 + (k + s) % 50,
                    "status": 500 if svc == "rare" else 200,
                }
                rows.append(({"service": svc, "host": f"h{s}"}, t0 + i * 10**6 + s, f"s{s}-{i}", tags))
        streams.write(batch(rows))
        streams.flush()


def _run(streams: lamina.EngineHandle, **kw: Any) -> tuple[list[Any], QueryStats]:
    st = QueryStats()
    return streams.query(stats=st, **kw), st


def test_selective_tag_filters_read_fewer_blocks(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    _write(streams, batch, t0)
    everything, full = _run(streams)
    assert full.blocks_total == 2 * N_SERIES and full.blocks_read == 2 * N_SERIES
    assert len(everything) == 2 * N_SERIES * PER_SERIES

    cases = [
        Eq("level", "ERROR"),  # bloom: only the "rare" series' blocks hold it
        In("status", [500, 503]),
        Range("latency_ms", ge=1000),  # int min/max
        And((Eq("service", "rare"), Eq("level", "ERROR"))),
        Or((Eq("host", "h3"), Eq("host", "h7"))),
    ]
    for flt in cases:
        got, st = _run(streams, where=flt)
        want = [e for e in everything if flt.matches(e.tags)]
        assert got == want, flt
        assert st.blocks_read < full.blocks_read / 4, (flt, st)
        assert st.blocks_pruned_tags == st.blocks_total - st.blocks_read - st.blocks_pruned_time
    # the "rare" series has one block per part; ~1 % bloom false positives may add a block or two
    _, st = _run(streams, where=Eq("level", "ERROR"))
    assert 2 <= st.blocks_read <= 4
    # int ranges are exact: no false positives at all
    _, st = _run(streams, where=Range("latency_ms", ge=1000))
    assert st.blocks_read == 2


def test_unselective_filter_reads_everything_and_misses_nothing(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    _write(streams, batch, t0)
    got, st = _run(streams, where=Eq("level", "INFO"))
    assert st.blocks_read == 2 * N_SERIES
    assert len(got) == 2 * N_SERIES * PER_SERIES - 2 * (PER_SERIES // 3)
    assert all(e.tags["level"] == "INFO" for e in got)


def test_time_and_series_prune_before_tags(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    _write(streams, batch, t0)
    got, st = _run(streams, series={"service": "svc-3", "host": "h3"})
    assert st.blocks_read == 2 and st.blocks_pruned_series == 2 * N_SERIES - 2
    assert {e.tags["host"] for e in got} == {"h3"} and len(got) == 2 * PER_SERIES
    # the second part's time range only: the first part is skipped whole by its time bounds
    got, st = _run(streams, start=t0 + PER_SERIES * 10**6)
    assert st.parts == 1 and st.blocks_read == N_SERIES
    assert len(got) == N_SERIES * PER_SERIES


def test_merged_parts_still_skip_blocks(
    streams: lamina.EngineHandle, batch: Callable[..., Any], t0: int
) -> None:
    _write(streams, batch, t0)
    before = _run(streams, where=Eq("level", "ERROR"))[0]
    assert streams.merge_now() == 1
    got, st = _run(streams, where=Eq("level", "ERROR"))
    assert got == before and len(got) == 2 * (PER_SERIES // 3)
    assert st.parts == 1 and st.blocks_read <= 3 < st.blocks_total
