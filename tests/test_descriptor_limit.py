"""A healthy store opens and answers queries under the default descriptor limit, whatever its size.

The reliability review opened a healthy 200-day trace store under `ulimit -n 1024` (the default
soft limit on most Linux systems): open returned normally with 108 of 200 parts moved to
`corrupt/` (`reason: io_error`, EMFILE), and a 300-part table lost 208 parts. Parts now hold no
descriptor of their own (a store-wide cache of at most `max_open_files` idle ones), and EMFILE is
an environment error, never damage. Each scenario runs in a child process whose soft limit is
lowered, so the test's own process keeps its limit; the store is built on /dev/shm when there is
one (a kill is not part of this test, so fsyncs need not be real, only fast).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.testing.figures import scale
from lamina.testing.torture import scratch_dir

T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9

_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    import lamina
    path, limit, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    with lamina.open(path, background=False) as store:
        rows = len(store.engine("trace").query(start=0, end=2**62, limit=10**9))
        one = store.engine("trace").query(trace_ids=[b"t%06d" % (expect - 1)])
        print(json.dumps({
            "rows": rows,
            "one": len(one),
            "quarantined": store.stats().engines["trace"].quarantined,
            "corrupt_total": store.metrics.value("lamina_corrupt_parts_total"),
            "fds_now": len(os.listdir("/proc/self/fd")),
            "cache_capacity": store.descriptors.capacity,
        }))
    """
)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    with scratch_dir(tmp_path) as d:
        yield Path(d)


def _build(path: Path, parts_per_day: int, days: int) -> int:
    """A trace store with `days` daily segments of `parts_per_day` unmerged parts each."""
    import lamina

    n = 0
    with lamina.open(str(path), background=False) as store:
        traces = store.engine("trace")
        for d in range(days):
            for _ in range(parts_per_day):
                tid = b"t%06d" % n
                traces.write(
                    {
                        "trace_id": [tid, tid],
                        "span_id": [b"a", b"b"],
                        "timestamp": [T0 + d * DAY + n, T0 + d * DAY + n + 1],
                        "duration": [10, 20],
                        "payload": [b"{}", b"{}"],
                        "tags": [{"service": "web", "status": 200}, {"service": "db", "region": "eu"}],
                    }
                )
                traces.flush()
                n += 1
    return n


def _open_under_limit(path: Path, limit: int, expect: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(limit), str(expect)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("parts_per_day", "days"), [(300, 1), (1, 200)], ids=["300-part-table", "200-days"])
def test_a_healthy_store_opens_whole_under_ulimit_1024(scratch: Path, parts_per_day: int, days: int) -> None:
    n = _build(scratch / "store", parts_per_day, days)
    got = _open_under_limit(scratch / "store", 1024, n)
    assert got["quarantined"] == 0 and got["corrupt_total"] == 0, got
    assert got["rows"] == 2 * n and got["one"] == 2, got
    assert got["fds_now"] <= got["cache_capacity"] + 64, got  # + interpreter, zstd, pipes


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_a_thousand_parts_open_under_ulimit_256(scratch: Path) -> None:
    """Many parts under a quarter of the default limit (they would need ~7 descriptors each):
    the bound is the cache's capacity (a quarter of the soft limit), not the number of parts.
    CI: 1,000 parts (20 s); long mode: 5,000."""
    n = _build(scratch / "store", scale(1000, 5000), 1)
    got = _open_under_limit(scratch / "store", 256, n)
    assert got["quarantined"] == 0 and got["rows"] == 2 * n, got
    assert got["cache_capacity"] == 64
    assert got["fds_now"] <= 64 + 64, got


def test_the_default_capacity_is_a_quarter_of_the_soft_limit() -> None:
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, "
        "resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
        "from lamina.io.descriptors import default_capacity; print(default_capacity())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 256
