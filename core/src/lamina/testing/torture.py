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

The store is kept across kills (damage would accumulate) and replaced by a fresh one every
`kills_per_store` kills, so the cost of a check stays flat.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

import lamina
from lamina.check import check_store
from lamina.io import durable
from lamina.plugins import Registry
from lamina.testing import figures

__all__ = ["TortureReport", "TortureSpec", "torture"]


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
        registry = Registry()
        registry._add_engine(self.engine, "<direct>")
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
    spec: TortureSpec, path: str, seq: int, seed: int, kill_at: tuple[int, str] | None, w: int
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
    spec: TortureSpec, path: str, seq: int, seed: int, kill_at: tuple[int, str] | None
) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            os.close(r)
            _child(spec, path, seq, seed, kill_at, w)
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
    return b"".join(chunks).decode().split()


def torture(
    spec: TortureSpec,
    workdir: Path,
    *,
    kills: int,
    seed: int = 0,
    max_delay_s: float = 0.05,
    kills_per_store: int = 100,
    named_every: int = 2,
    barriers: int = 30,
) -> TortureReport:
    """Kill a writer `kills` times (every `named_every`-th kill at a named kill point)."""
    rng = random.Random(seed)
    report = TortureReport()
    store_no, sent, acked = -1, -1, set[int]()
    next_seq = 0
    path = ""
    for i in range(kills):
        if i % kills_per_store == 0:
            store_no += 1
            path = str(workdir / f"store-{store_no}")
            sent, acked, next_seq = -1, set(), 0
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
            report.problems.append(f"kill {i}: the writer failed on its own (exit {os.WEXITSTATUS(status)})")
            continue
        report.kills += 1
        report.named += named
        words = iter(msgs)
        for tag in words:
            if tag == "W":
                sent = max(sent, int(next(words)))
            elif tag == "A":
                acked.add(int(next(words)))
        next_seq = sent + 1
        problem = _check(spec, path, sent, acked, report)
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


def _check(spec: TortureSpec, path: str, sent: int, acked: set[int], report: TortureReport) -> str | None:
    if not Path(path).exists():
        return None if not acked else "the store directory vanished"
    try:
        store = lamina.Store(path, registry=spec.registry(), background=False)
    except Exception as e:
        return f"reopen failed: {type(e).__name__}: {e}"
    try:
        h = store.engine(spec.engine.name)
        counts = Counter(spec.seq_of(row) for row in spec.rows_of(h))
        quarantined = h.stats().quarantined
    finally:
        store.close()
    report.acked += len(acked)
    problems = []
    for seq in sorted(acked):
        if counts.get(seq, 0) != spec.batch_rows(seq):
            report.lost_rows += max(0, spec.batch_rows(seq) - counts.get(seq, 0))
            problems.append(f"acknowledged batch {seq} has {counts.get(seq, 0)}/{spec.batch_rows(seq)} rows")
    for seq, n in sorted(counts.items()):
        if seq > sent:
            problems.append(f"batch {seq} was never sent but has {n} rows")
        elif n != spec.batch_rows(seq):
            problems.append(f"batch {seq} is partial or duplicated: {n}/{spec.batch_rows(seq)} rows")
    if quarantined:
        report.quarantined += quarantined
        problems.append(f"{quarantined} parts quarantined: a kill alone must never corrupt a part")
    deep = check_store(path, deep=True, registry=spec.registry())
    if not deep.ok:
        problems.append(f"check --deep: {[str(p) for p in deep.damage][:3]}")
    return "; ".join(problems) or None
