"""Barrier-mutation score (development tool, groundwork for issue 7; not run by CI).

Disables one fsync call site at a time (a site = the first caller outside lamina/io of a data or
directory fsync), runs the power-loss exploration of core/tests/test_power_loss.py (crash at every
mutating operation of its flush + merge workload, strict power loss), and reports whether the
invariants catch the missing barrier ("KILLED") or not ("SURVIVED"). A surviving barrier is
either redundant (remove it, with a comment why) or exposes a missing test.

    python -m uv run python tools/barrier_mutation.py
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
import traceback
from pathlib import Path

from lamina.io import durable
from lamina.io.sim import SimFS, SimulatedCrash

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("power_loss", ROOT / "core/tests/test_power_loss.py")
assert _spec and _spec.loader
pl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pl)

_orig = durable._timed_fsync
_seen: dict[str, int] = {}
_disabled: list[str | None] = [None]


def _site(kind: str) -> str:
    for f in reversed(traceback.extract_stack()[:-3]):
        if "/lamina/io/" not in f.filename:
            return f"{kind}@{f.filename.split('/lamina/')[-1]}:{f.name}:{f.lineno}"
    return kind


def _patched(kind: str, fn, *args):  # type: ignore[no-untyped-def]
    site = _site(kind)
    _seen[site] = _seen.get(site, 0) + 1
    if site != _disabled[0]:
        _orig(kind, fn, *args)


def main() -> None:
    durable._timed_fsync = _patched  # type: ignore[assignment]
    fs = SimFS()
    pl.workload(fs, [])
    total, sites = fs.op_count, sorted(_seen)
    print(f"{len(sites)} fsync sites, {total} mutating operations in the workload")
    killed = 0
    for site in sites:
        _disabled[0] = site
        t0, verdict = time.time(), None
        for k in range(total + 5):
            f = SimFS()
            f.crash_at(k)
            acked: list = []
            with contextlib.suppress(SimulatedCrash):
                pl.workload(f, acked)
            try:
                pl.check_invariants(f.crash_state("power"), acked, f"{site} crash at op {k}")
            except BaseException as e:  # an invariant broke: the barrier is load-bearing
                verdict = f"crash at op {k}: {type(e).__name__}: {str(e)[:100]}"
                break
        killed += verdict is not None
        status = "KILLED  " if verdict else "SURVIVED"
        print(f"{status} {site} ({time.time() - t0:.1f}s) {verdict or ''}")
    print(f"score: {killed}/{len(sites)} barriers are caught when removed")


if __name__ == "__main__":
    main()
