"""Real kill -9 torture: a writer process on a real directory, killed over and over.

The simulator (crash.py) proves the protocol against a model of the disk; this proves the real
code on the real kernel, the way RocksDB's db_crashtest does. A forked child opens the store
(running recovery), then writes, flushes and merges seeded batches, and reports on a pipe:
``W seq`` before it writes batch `seq` and ``A seq`` only after `flush()` returned. The parent
kills it with SIGKILL, either after a random delay or at a named kill point (the child kills
itself right before or right after its n-th fsync / directory fsync, so every barrier of open,
flush and merge gets its turn deterministically). After every kill the parent reopens the store
and checks, against the acknowledgements it received:

- every acknowledged batch is present, exactly once, with all its rows;
- no batch that was never sent appears; every batch is all-or-nothing;
- `check_store(deep=True)` is clean and no part was quarantined (a kill never corrupts a part).

Two oracles say which rows the reopened store must hold. `TortureSpec` tags every row with its
batch number (`seq_of`), so a failure names the batch and the rows it lost. `ReferenceSpec` needs
nothing but an engine's contract fixtures (`sample_batches`, `query_all`): batch `seq` is sample
batch ``seq mod n``, and the rows are compared with a reference store on `SimFS` holding the same
batches, flushed in the same order, so an engine whose equal-key rule drops or combines rows is
judged by its own rule. `CrashContract` runs the second for every engine, third-party ones too.

The store is kept across kills (damage would accumulate) and replaced by a fresh one every
`kills_per_store` kills, so the cost of a check stays flat.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

import lamina
from lamina.check import check_store
from lamina.io import durable
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing import figures

__all__ = ["ReferenceSpec", "TortureReport", "TortureSpec", "calibrate", "scratch_dir", "torture"]


@attrs.frozen
class TortureSpec:
    """What the torture writes and how it recognises it.

    `make_batch(seq)` builds batch `seq` (`batch_rows(seq)` rows); `seq_of(row)` maps a row, as
    `rows_of(handle)` returns it, back to its batch. Rows must be unique per batch.
    """

    engine: lamina.Engine
    make_batch: Callable[[int], Any]
    batch_rows: Callable[[int], int]
    rows_of: Callable[[lamina.EngineHandle], list[Any]]
    seq_of: Callable[[Any], int]

    def registry(self) -> Registry:
        return _registry_of(self.engine)

    def judge(self) -> _TaggedJudge:
        return _TaggedJudge(self)


@attrs.frozen
class ReferenceSpec:
    """Any engine, from its contract fixtures: batch `seq` is `make(seq)`, by default
    `batches[seq % len(batches)]`, and `query_all(handle)` returns every row, hashable (see the
    module docstring).

    The oracle only sees a lost batch if writing it changes the engine's answer. An engine whose
    equal-key rule hides a repeated batch (highest version wins, identical rows dropped) needs a
    `make` that makes every batch distinct; `blind_spot` finds out which case an engine is in."""

    engine: lamina.Engine
    batches: Sequence[Any]
    query_all: Callable[[lamina.EngineHandle], list[Any]]
    make: Callable[[int], Any] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.batches:
            raise ValueError("ReferenceSpec needs at least one sample batch")

    def make_batch(self, seq: int) -> Any:
        return self.batches[seq % len(self.batches)] if self.make is None else self.make(seq)

    def blind_spot(self, upto: int) -> int | None:
        """The first batch number below `upto` whose batch, written after all the earlier ones,
        leaves the engine's answer unchanged (a loss of it would go unseen); None if none."""
        judge = _ReferenceJudge(self)
        before = judge._extend(judge.fs, [])
        for seq in range(upto):
            after = judge._extend(judge.fs, [seq])
            if after == before:
                return seq
            before = after
        return None

    def registry(self) -> Registry:
        return _registry_of(self.engine)

    def judge(self) -> _ReferenceJudge:
        return _ReferenceJudge(self)


def _registry_of(engine: lamina.Engine) -> Registry:
    registry = Registry()
    registry._add_engine(engine, "<direct>")
    return registry


@attrs.define
class TortureReport:
    kills: int = 0
    named: int = 0
    acked: int = 0
    lost_rows: int = 0
    quarantined: int = 0
    problems: list[str] = attrs.field(factory=list)


def _child(
    spec: TortureSpec | ReferenceSpec, path: str, seq: int, seed: int, kill_at: tuple[int, str] | None, w: int
) -> None:
    """The writer. Never returns: it is killed, kills itself, or exits after 400 batches."""
    if kill_at is not None:
        target, when = kill_at
        count = [0]
        original = durable._timed_fsync

        def barrier(kind: str, fn: Callable[..., None], *args: str) -> None:
            count[0] += 1
            if count[0] == target and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            original(kind, fn, *args)
            if count[0] == target and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)

        durable._timed_fsync = barrier  # type: ignore[assignment]
    rng = random.Random(seed)
    store = lamina.Store(path, registry=spec.registry(), background=False)
    h = store.engine(spec.engine.name)
    os.write(w, b"R\n")
    for _ in range(400):
        os.write(w, b"W %d\n" % seq)
        h.write(spec.make_batch(seq))
        h.flush()
        os.write(w, b"A %d\n" % seq)
        seq += 1
        if rng.random() < 0.5:
            h.merge_now()
    os._exit(0)


def _spawn(
    spec: TortureSpec | ReferenceSpec, path: str, seq: int, seed: int, kill_at: tuple[int, str] | None
) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            os.close(r)
            _child(spec, path, seq, seed, kill_at, w)
        except BaseException as e:  # say why on the pipe: the parent reports it
            with contextlib.suppress(OSError):
                os.write(w, b"E %s\n" % " ".join(f"{type(e).__name__}: {e}".split()).encode()[:400])
        finally:
            os._exit(70)
    os.close(w)
    return pid, r


def _read_all(fd: int) -> list[str]:
    chunks = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode().splitlines()


def _error_of(lines: list[str]) -> str:
    """The error a failed writer reported (its "E ..." line), or a placeholder."""
    return next((line[2:] for line in lines if line.startswith("E ")), "no error reported")


def torture(
    spec: TortureSpec | ReferenceSpec,
    workdir: Path,
    *,
    kills: int,
    seed: int = 0,
    max_delay_s: float | None = None,
    kills_per_store: int = 100,
    named_every: int = 2,
    barriers: int = 30,
) -> TortureReport:
    """Kill a writer `kills` times (every `named_every`-th kill at a named kill point).

    A random kill comes after a delay drawn from 0..`max_delay_s`. None calibrates it to the
    engine: twice the time an undisturbed writer takes to start and acknowledge its first few
    batches (`calibrate`), so a slow engine is not killed before it ever acknowledges anything (which
    would prove nothing) and a fast one is not let run for long between kills."""
    rng = random.Random(seed)
    if max_delay_s is None:  # twice the calibration: a loaded machine is slower some moments
        max_delay_s = 2 * calibrate(spec, workdir)
    report = TortureReport()
    store_no, sent, acked = -1, -1, set[int]()
    next_seq = 0
    path = ""
    judge: _TaggedJudge | _ReferenceJudge = spec.judge()
    for i in range(kills):
        if i % kills_per_store == 0:
            store_no += 1
            path = str(workdir / f"store-{store_no}")
            sent, acked, next_seq = -1, set(), 0
            judge = spec.judge()
        named = i % named_every == 0
        # walk the barriers in order: the first `barriers` of the child's life (its recovery,
        # two or three flushes, a merge), before and after each
        k = i // named_every
        kill_at = (1 + (k // 2) % barriers, ("before", "after")[k % 2]) if named else None
        pid, r = _spawn(spec, path, next_seq, rng.randrange(2**32), kill_at)
        if not named:
            time.sleep(rng.uniform(0, max_delay_s))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        msgs = _read_all(r)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
            report.problems.append(
                f"kill {i}: the writer failed on its own (exit {os.WEXITSTATUS(status)}): {_error_of(msgs)}"
            )
            continue
        report.kills += 1
        report.named += named
        for tag, _, number in (line.partition(" ") for line in msgs):
            if tag == "W":
                sent = max(sent, int(number))
            elif tag == "A":
                acked.add(int(number))
        next_seq = sent + 1
        problem = _check(spec, judge, path, sent, acked, report)
        if problem is not None:
            report.problems.append(
                f"kill {i} (seed {seed}, {'at ' + str(kill_at) if named else 'random'}): {problem}"
            )
    figures.add(
        kills=report.kills,
        kill_acked_batches=report.acked,
        kill_lost_rows=report.lost_rows,
        kill_quarantined=report.quarantined,
    )
    return report


def calibrate(
    spec: TortureSpec | ReferenceSpec, workdir: Path, *, acks: int = 3, limit_s: float = 30.0
) -> float:
    """Seconds an undisturbed writer takes, from fork, to acknowledge `acks` batches (it is then
    killed, and its scratch store removed). Raises if it fails or acknowledges nothing in
    `limit_s`: the torture would be meaningless."""
    path = workdir / "calibration"
    start = time.perf_counter()
    pid, r = _spawn(spec, str(path), 0, 0, None)
    seen, buf = 0, b""
    try:
        while seen < acks:
            left = limit_s - (time.perf_counter() - start)
            ready, _, _ = select.select([r], [], [], max(left, 0))
            chunk = os.read(r, 4096) if ready else b""
            if not chunk:
                why = f"it exited: {_error_of(buf.decode().splitlines())}" if ready else "timed out"
                raise RuntimeError(
                    f"torture calibration: the {spec.engine.name!r} writer acknowledged {seen} of {acks} "
                    f"batches in {limit_s:.0f} s ({why})"
                )
            buf += chunk
            seen = sum(line.startswith(b"A ") for line in buf.splitlines())
        return time.perf_counter() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        shutil.rmtree(path, ignore_errors=True)


def _check(
    spec: TortureSpec | ReferenceSpec,
    judge: _TaggedJudge | _ReferenceJudge,
    path: str,
    sent: int,
    acked: set[int],
    report: TortureReport,
) -> str | None:
    """Reopen the store after a kill (running recovery) and judge it; None if every rule holds."""
    if not Path(path).exists():
        return None if not acked else "the store directory vanished"
    try:
        store = lamina.Store(path, registry=spec.registry(), background=False)
    except Exception as e:
        return f"reopen failed: {type(e).__name__}: {e}"
    try:
        h = store.engine(spec.engine.name)
        rows = judge.rows_of(h)
        quarantined = h.stats().quarantined
    finally:
        store.close()
    report.acked += len(acked)
    problems = judge.judge(rows, sent, acked, report)
    if quarantined:
        report.quarantined += quarantined
        problems.append(f"{quarantined} parts quarantined: a kill alone must never corrupt a part")
    deep = check_store(path, deep=True, registry=spec.registry())
    if not deep.ok:
        problems.append(f"check --deep: {[str(p) for p in deep.damage][:3]}")
    return "; ".join(problems) or None


class _TaggedJudge:
    """Rows carry their batch number: count them per batch."""

    def __init__(self, spec: TortureSpec) -> None:
        self.spec = spec

    def rows_of(self, h: lamina.EngineHandle) -> list[Any]:
        return self.spec.rows_of(h)

    def judge(self, rows: list[Any], sent: int, acked: set[int], report: TortureReport) -> list[str]:
        spec = self.spec
        counts = Counter(spec.seq_of(row) for row in rows)
        problems = []
        for seq in sorted(acked):
            if counts.get(seq, 0) != spec.batch_rows(seq):
                report.lost_rows += max(0, spec.batch_rows(seq) - counts.get(seq, 0))
                problems.append(
                    f"acknowledged batch {seq} has {counts.get(seq, 0)}/{spec.batch_rows(seq)} rows"
                )
        for seq, n in sorted(counts.items()):
            if seq > sent:
                problems.append(f"batch {seq} was never sent but has {n} rows")
            elif n != spec.batch_rows(seq):
                problems.append(f"batch {seq} is partial or duplicated: {n}/{spec.batch_rows(seq)} rows")
        return problems


class _ReferenceJudge:
    """Keeps a reference store (on SimFS) holding exactly the batches the store under test holds.

    After each kill, the batches sent since the last check are the new candidates: every
    acknowledged one must be there, and the last one sent, if unacknowledged, may be there in full
    or not at all. The store's rows must equal the reference's rows for one of those two
    outcomes; the matching one becomes the new reference. Only the candidates are written per
    check (the reference grows with the store), so a check costs one or two flushes and queries.
    """

    ROOT = "/reference"

    def __init__(self, spec: ReferenceSpec) -> None:
        self.spec = spec
        self.fs = SimFS()
        self.judged = -1  # the highest batch number already judged

    def rows_of(self, h: lamina.EngineHandle) -> list[Any]:
        return sorted(self.spec.query_all(h))

    def _extend(self, fs: SimFS, seqs: Sequence[int]) -> list[Any]:
        """Flush `seqs` into the reference store on `fs`, one flush each; its rows after."""
        store = lamina.Store(self.ROOT, fs=fs, registry=self.spec.registry(), background=False)
        try:
            h = store.engine(self.spec.engine.name)
            for seq in seqs:
                h.write(self.spec.make_batch(seq))
                h.flush()
            # Merged like the store under test (which merges every other batch): an unmerged
            # reference grows a part per batch, and its queries come to dominate the torture.
            # Merging never changes an engine's answer (the merge contract proves it).
            h.merge_now()
            return self.rows_of(h)
        finally:
            store.close()

    def judge(self, rows: list[Any], sent: int, acked: set[int], report: TortureReport) -> list[str]:
        new = range(self.judged + 1, sent + 1)
        self.judged = max(self.judged, sent)
        problems = []
        unacked = [s for s in new if s not in acked]
        if unacked and unacked != [sent]:
            problems.append(f"batches {unacked} were sent but not acknowledged, yet not the last one sent")
        without = self.fs.crash_state("process")  # a copy: the reference so far
        expected = self._extend(without, [s for s in new if s in acked])
        if rows == expected:
            self.fs = without
            return problems
        if unacked and unacked[-1] == sent:
            with_last = without.crash_state("process")
            expected_with = self._extend(with_last, [sent])
            if rows == expected_with:
                self.fs = with_last
                return problems
        missing, extra = Counter(expected) - Counter(rows), Counter(rows) - Counter(expected)
        report.lost_rows += missing.total()
        problems.append(
            f"after batches 0..{sent} (acknowledged: {len(acked)}), {missing.total()} expected rows are "
            f"missing and {extra.total()} rows are unexpected"
            + (f" (the in-flight batch {sent} in full would not explain them)" if unacked else "")
            + f"; first missing: {sorted(missing)[:2]}, first unexpected: {sorted(extra)[:2]}"
        )
        self.fs = without  # go on from what was acknowledged
        return problems


@contextlib.contextmanager
def scratch_dir(fallback: Path) -> Iterator[Path]:
    """A directory on tmpfs (/dev/shm) when the machine has one, else `fallback`.

    A kill -9 keeps the page cache, so what the kernel has accepted survives whether or not it
    reached the platter: the torture tests process-crash atomicity and the real recovery code,
    and tmpfs makes each fsync free, which buys many more kills per CI minute. Power loss is the
    simulator's job (crash.py)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield fallback
        return
    d = Path(tempfile.mkdtemp(prefix="lamina-torture-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
