"""I/O errors at every operation of flush and merge (SQLite's I/O-error tests, SPEC §4 and §11).

A fault (EIO, ENOSPC, or a short write that then fails with ENOSPC) is injected at the k-th
mutating operation of the phase, for every k, either once (a transient hiccup) or persistently
(from that op on, every op of that kind fails: a dead or full disk). Each case checks:

- the phase fails with a clear error (an `OSError` or a `LaminaError`), never anything else;
- a failed fsync poisons the table: further commits are refused until reopen (fsyncgate);
- nothing acknowledged is lost: after the fault clears, the store (reopened from the strict
  power-loss state when poisoned, to model that the failed barrier may have lost data) shows
  every acknowledged row, and retrying the phase then succeeds with exactly the rows written.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import attrs

from lamina.errors import LaminaError, PoisonedTableError
from lamina.io.sim import Fault, SimFS
from lamina.testing import figures
from lamina.testing.crash import PREFIX, Ledger, Run, Subject, check_state

__all__ = ["KINDS", "PHASES", "FaultCase", "all_modes", "base_store", "fault_cases", "phase_ops", "run_case"]

PHASES: tuple[str, ...] = ("flush", "merge")
#: kind -> (errno, short write?)
KINDS: dict[str, tuple[int, bool]] = {
    "eio": (errno.EIO, False),
    "enospc": (errno.ENOSPC, False),
    "short": (errno.ENOSPC, True),
}


@attrs.frozen
class FaultCase:
    phase: str
    kind: str
    persistent: bool
    index: int  # the k-th mutating op of the phase

    def __str__(self) -> str:
        mode = "persistent" if self.persistent else "once"
        return f"{self.kind} ({mode}) at op {self.index} of {self.phase}"


def base_store(subject: Subject) -> SimFS:
    """A durable store holding two flushed parts (slots 0 and 1), closed."""
    fs = SimFS()
    Run(subject, fs).run(PREFIX)
    return fs.crash_state("power")


def _start(subject: Subject, fs: SimFS, phase: str) -> tuple[Run, int]:
    run = Run(subject, fs)
    run.visible, run.next_slot = (0, 1), 2
    h = run.handle
    for t in h.tables():
        for p in t.live_parts:
            run.parts[p.part_id] = ()
    if phase == "flush":
        h.write(subject.batch_of(2))
    return run, fs.op_count


def phase_ops(subject: Subject, base: SimFS, phase: str) -> list[str]:
    """The mutating ops the phase performs, in order (what the sweep injects into)."""
    fs = base.crash_state("process")
    run, start = _start(subject, fs, phase)
    _do(run, phase)
    ops = [op.op for op in fs.ops[start:]]
    run.store.close()  # type: ignore[union-attr]
    return ops


def fault_cases(
    subject: Subject, base: SimFS, phase: str, kind: str, persistent: bool, *, stride: int = 1
) -> Iterator[FaultCase]:
    """Every op of the phase that can take this fault (every `stride`-th one)."""
    short = KINDS[kind][1]
    for k, op in enumerate(phase_ops(subject, base, phase)):
        if short and op != "write":
            continue  # a short write is a write that stops early
        if k % stride:
            continue
        yield FaultCase(phase, kind, persistent, k)


def _do(run: Run, phase: str) -> None:
    h = run.handle
    if phase == "flush":
        h.flush()
    else:
        h.merge_now()


def run_case(subject: Subject, base: SimFS, case: FaultCase) -> str | None:
    """Run one fault case; None if every rule held, else what broke."""
    err, short = KINDS[case.kind]
    fs = base.crash_state("process")
    run, start = _start(subject, fs, case.phase)
    target = (0, 1, 2) if case.phase == "flush" else (0, 1)
    armed: list[str] = []
    faults: list[Fault] = []

    def observe(index: int, op: str, path: str) -> None:
        if index != start + case.index or armed:
            return
        armed.append(op)
        if short:
            faults.append(fs.inject("write", path, err, short_write=7, once=not case.persistent))
        elif case.persistent:  # a dead disk: this op and every later op of the same kind fail
            faults.append(fs.inject(op, "*", err, once=False))
        else:
            faults.append(fs.inject(op, path.replace("[", "[[]"), err))

    fs.observer = observe
    raised: BaseException | None = None
    try:
        _do(run, case.phase)
    except Exception as e:
        raised = e
    finally:
        fs.observer = None
    figures.add(io_faults=1, io_violations=0)
    problem = _judge(subject, fs, run, case, target, raised, armed, faults)
    if problem is not None:
        figures.add(io_violations=1)
    return problem


def _judge(
    subject: Subject,
    fs: SimFS,
    run: Run,
    case: FaultCase,
    target: tuple[int, ...],
    raised: BaseException | None,
    armed: list[str],
    faults: list[Fault],
) -> str | None:
    if not armed or not any(f.fired for f in faults):
        return f"{case}: the fault never fired (the sweep is out of step with the phase)"
    if raised is not None and not isinstance(raised, OSError | LaminaError):
        return f"{case}: unclear error {type(raised).__name__}: {raised}"
    fs.clear_faults()
    h = run.handle
    poisoned = any(t.poisoned for t in h.tables())
    fsync_failed = armed[0] in ("fsync", "fsync_dir")
    if fsync_failed and not poisoned:
        return f"{case}: an fsync failed ({raised!r}) but the table is not poisoned"
    allowed = (run.visible, target) if raised is not None else (target,)
    if poisoned:
        if case.phase == "flush" and raised is not None:
            try:
                h.flush()
                return f"{case}: a poisoned table accepted another flush"
            except PoisonedTableError:
                pass
            except Exception as e:
                what = type(e).__name__
                return f"{case}: a poisoned table refused a flush with {what}, not PoisonedTableError"
        with contextlib.suppress(Exception):
            run.store.close()  # type: ignore[union-attr]
        # the failed barrier may have lost whatever it covered: judge the strict power-loss disk
        state = fs.crash_state("power")
    else:
        try:
            _do(run, case.phase)  # the retry after the fault cleared
            got = sorted(subject.query_all(h))
        except Exception as e:
            return f"{case}: retry after the fault cleared failed: {type(e).__name__}: {e}"
        if got != subject.expected(target):
            return f"{case}: after the retry the rows are not exactly the ones written"
        run.store.close()  # type: ignore[union-attr]
        state = fs.crash_state("power")
        allowed = (target,)
    problem = check_state(subject, state.crash_state("process"), Ledger(allowed))
    if problem is not None:
        return f"{case}: after reopen: {problem}"
    if not poisoned:
        return None  # the retry on the live store already showed it works
    # after the fault cleared and a reopen, the poisoned store works again: finish the phase
    store = subject.open(state)
    try:
        h2 = store.engine(subject.name)
        got = sorted(subject.query_all(h2))
        if got == subject.expected(run.visible) and case.phase == "flush":
            h2.write(subject.batch_of(2))
            h2.flush()
        h2.merge_now()
        if sorted(subject.query_all(h2)) != subject.expected(target):
            return f"{case}: after reopen and retry the rows are not exactly the ones written"
    except Exception as e:
        return f"{case}: the reopened store does not work: {type(e).__name__}: {e}"
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return None


def all_modes() -> Iterator[tuple[str, str, bool]]:
    for phase in PHASES:
        for kind in KINDS:
            for persistent in (False, True):
                yield phase, kind, persistent
