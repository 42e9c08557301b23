"""Cost of many distinct tag names in one table: write, flush, peak memory, descriptors.

    python3 -m uv run python benchmarks/tag_names.py                      # 1,000 and 8,000 names
    python3 -m uv run python benchmarks/tag_names.py --names 1000 20000
    python3 -m uv run python benchmarks/tag_names.py --max-tag-names 8192 # raise Engine.max_tag_names

Every tag name costs two files per part (`<tag>.t`, `<tag>.tm`) plus a dictionary, at every flush
and merge, so the cost of a flush grows with the number of distinct names, not with the rows:
8,000 names took 18.6 s and 1.56 GB to flush, 20,000 never finished. `Engine.max_tag_names`
(default 1,024) now refuses, in `write()`, a batch that would take a table past the bound, before
anything is buffered; this script shows both sides: under the bound the flush as before, over it
the refusal (and its cost), and with the bound raised the flush it prevents.

Each case runs in a child process (a fresh interpreter: its peak RSS is the case's own) on a real
directory: the trace engine, `names` spans of one trace, span i tagged {"t<i>": i, "svc": "api"}
(`names` + 1 distinct names), written as one batch and flushed once. Reported: write() and flush()
wall time, the child's peak RSS, the descriptors it holds after the flush, and the outcome. Works
on code without the bound too (it only passes max_tag_names when the engine has it), so the same
command measures before and after. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = 1_700_000_000_000_000_000


def _fds() -> int:
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:
        return -1


def case(names: int, max_tag_names: int | None, root: str) -> dict[str, Any]:
    """One measurement, in this process (the parent runs it in a child)."""
    import attrs

    import lamina
    from lamina.plugins import Registry
    from lamina_trace.plugin import ENGINE

    engine = ENGINE
    if max_tag_names is not None and "max_tag_names" in attrs.fields_dict(type(ENGINE)):
        engine = attrs.evolve(ENGINE, max_tag_names=max_tag_names)
    limit = getattr(engine, "max_tag_names", None)
    batch = {
        "trace_id": [b"trace"] * names,
        "span_id": [b"s%d" % i for i in range(names)],
        "timestamp": [T0 + i for i in range(names)],
        "duration": [1] * names,
        "payload": [b"{}"] * names,
        "tags": [{f"t{i}": i, "svc": "api"} for i in range(names)],
    }
    out: dict[str, Any] = {"names": names + 1, "limit": limit, "fds_before": _fds()}
    store = lamina.Store(root, registry=Registry(), engines=[engine], background=False)
    try:
        traces = store.engine("trace")
        t = time.perf_counter()
        try:
            traces.write(batch)
        except lamina.InvalidInputError as e:
            out.update(outcome="refused", write_s=time.perf_counter() - t, error=str(e)[:120])
            return out
        out["write_s"] = time.perf_counter() - t
        t = time.perf_counter()
        traces.flush()
        out.update(outcome="stored", flush_s=time.perf_counter() - t, fds_after_flush=_fds())
        out["spans_read"] = len(traces.query(trace_ids=[b"trace"]))
    finally:
        store.close()
    return out


def run_child(names: int, max_tag_names: int | None, timeout: float) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="lamina-tags-")
    args = [sys.executable, __file__, "--child", str(names), "--root", root]
    if max_tag_names is not None:
        args += ["--max-tag-names", str(max_tag_names)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"names": names + 1, "outcome": f"did not finish in {timeout:.0f} s"}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if proc.returncode:
        return {"names": names + 1, "outcome": "failed", "error": proc.stderr.strip().splitlines()[-1:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, nargs="+", default=[1000, 8000], help="tag names per case")
    ap.add_argument("--max-tag-names", type=int, default=None, help="Engine.max_tag_names to set")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        res = case(a.child, a.max_tag_names, a.root)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    import lamina

    print(f"lamina {lamina.__version__} from {Path(lamina.__file__).parent}")
    head = f"{'names':>7} {'limit':>6} {'outcome':>8} {'write s':>8} {'flush s':>8} {'peak MB':>8} {'fds':>6}"
    print(head)
    for n in a.names:
        r = run_child(n, a.max_tag_names, a.timeout)
        fds = r.get("fds_after_flush", "")
        print(
            f"{r['names']:>7,} {r.get('limit') or '-':>6} {r['outcome']:>8} {r.get('write_s', 0):>8.3f} "
            f"{r.get('flush_s', 0):>8.2f} {r.get('peak_rss_mb', 0):>8.0f} {fds:>6}"
        )
        if r.get("error"):
            print(f"        {r['error']}")


if __name__ == "__main__":
    main()
