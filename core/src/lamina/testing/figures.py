"""The reliability figures the crash-proof suite accumulates during a test session.

Every explorer, fuzzer and torture loop adds its counts here; the repository's conftest prints
them at the end of the run (`print_summary`), so the targets (crash states, kills, detection rate,
mutation score) are measured on every CI run, not merely claimed. One process-wide counter is
enough: pytest runs the suite in one process, and the kill -9 children never report here.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

__all__ = ["FIGURES", "LONG", "add", "mode", "print_summary", "scale"]

FIGURES: Counter[str] = Counter()
_lock = threading.Lock()

#: What each figure means, in the order the summary prints them.
LABELS: dict[str, str] = {
    "crash_points": "crash points explored (mutating ops, incl. recovery)",
    "crash_states": "crash states checked",
    "crash_states_distinct": "  of which distinct (by content)",
    "crash_violations": "invariant violations",
    "mutation_sites": "barrier-mutation sites disabled in turn",
    "mutation_killed": "  killed (an invariant broke without them)",
    "io_faults": "I/O faults injected (EIO/ENOSPC/short write)",
    "io_violations": "  violations",
    "kills": "kill -9 of a writer process",
    "kill_acked_batches": "  acknowledged batches checked",
    "kill_lost_rows": "  acknowledged rows lost",
    "kill_quarantined": "  parts quarantined after a kill",
    "fuzz_tried": "corruptions tried",
    "fuzz_detected": "  detected (quarantined or documented error)",
    "fuzz_harmless": "  harmless (bytes no reader depends on: not counted as tried)",
    "fuzz_silent": "  silent wrong answers",
    "uncaught": "uncaught exceptions",
    "input_cases": "hostile write() batches (lamina.testing.input_fuzz)",
    "input_cases.kv": "  engine kv",
    "input_cases.kinds": "  engine kinds (one column of every kind)",
    "input_cases.trace": "  engine trace",
    "input_cases.measure": "  engine measure",
    "input_cases.stream": "  engine stream",
    "input_cases.sidx": "  engine sidx",
    "input_refused": "  refused: InvalidInputError, nothing buffered changed",
    "input_stored": "  stored: read back unchanged (buffer, flush, reopen)",
    "input_wedged": "  wedged tables (accepted, then flush or query failed)",
    "input_raw": "  raw exceptions (not a LaminaError)",
    "query_cases": "hostile query() arguments",
    "query_refused": "  refused (InvalidInputError)",
    "query_answered": "  answered",
    "query_raw": "  raw exceptions (not a LaminaError)",
    # lamina.testing.kernel_cut: listed here, not registered there, so that under pytest-xdist
    # the controller (which never imports kernel_cut) prints them too
    "kernel_cuts_ext4": "real power cuts (shutdown ioctl), ext4",
    "kernel_cuts_xfs": "real power cuts (shutdown ioctl), XFS",
    "kernel_cuts_named": "  of which at a named fsync",
    "kernel_acked_batches": "  acknowledged batches checked after a cut",
    "kernel_lost_rows": "  acknowledged rows lost",
    "kernel_quarantined": "  parts quarantined by a cut alone",
    "kernel_ops_replayed": "  file-system calls logged and replayed into SimFS",
    "kernel_not_admitted": "  surviving states SimFS's crash model does not allow",
    "kernel_not_admitted_stale": "    of which values from before a directory fsync",
}

LONG = os.environ.get("LAMINA_TORTURE", "").lower() == "long"


def mode() -> str:
    return "long" if LONG else "ci"


def scale(ci: int, long: int) -> int:
    """The CI figure, or the long-mode one under LAMINA_TORTURE=long."""
    return long if LONG else ci


def add(**counts: int) -> None:
    with _lock:
        for k, v in counts.items():
            FIGURES[k] += v


def print_summary(tr: Any) -> None:
    """Write the figures section to a pytest terminal reporter (nothing if no suite ran)."""
    if not FIGURES:
        return
    tr.write_sep("=", f"lamina reliability figures ({mode()} mode)")
    for key, label in LABELS.items():
        if key in FIGURES:
            tr.write_line(f"{label:<62} {FIGURES[key]:>10,}")
    if FIGURES.get("mutation_sites"):
        pct = 100 * FIGURES["mutation_killed"] / FIGURES["mutation_sites"]
        label = "mutation score" if LONG else "mutation score (the CI subset of sites; all: long mode)"
        tr.write_line(f"{label:<62} {pct:>9.1f}%")
    tried = FIGURES.get("fuzz_tried", 0)
    if tried:
        tr.write_line(f"{'corruption detection rate':<62} {100 * FIGURES['fuzz_detected'] / tried:>9.2f}%")
