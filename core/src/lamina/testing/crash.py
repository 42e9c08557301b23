"""Crash-state exploration: every crash point of a workload, every way the disk can be left.

The explorer runs a workload (a short sequence of flush / merge / drop / quarantine / reopen)
ONCE on a `SimFS` whose `observer` fires before every mutating file-system operation. At each such
crash point it builds the disks a crash there can leave (ALICE / SQLite / Pebble models):

- ``process``: a kill -9, the page cache survives;
- ``power``: strict power loss, only fsynced bytes and fsynced directory entries survive;
- ``torn512`` / ``torn4k``: power loss with the unsynced appends cut at sector boundaries;
- ``tornz<n>``: seeded torn appends, half of them with a zero-filled last sector;
- ``random<n>``: a seeded random subset of the pending changes;
- ``omit<n>``: the process state minus exactly the n-th pending change (a reordering);
- ``kill``: a kill -9 on a machine that lives on, then a power loss during or right after the
  recovery that runs on the killed process's unsynced page cache (its ``recovery=`` names where
  the power went: ``<op>:<cut>`` or ``end:<cut>``).

Renames are atomic in every model (SPEC §11): the random and omission variants keep both names
of a pending rename together.

Each state is reopened and checked against a ledger of the batches the workload had acknowledged
(`Ledger`), never against "no exception": SPEC §10 invariants 1, 2, 3, 6 (and 7 and 8 for the
sampled compound states, where recovery itself is crashed at every one of its operations).

A failure is reported as one replay string, e.g.
``lamina-crash/1 engine=kv workload=flush,merge op=57 variant=random3 seed=0``, and `replay()`
rebuilds exactly that state (the same one run, stopped at the same op) and checks it again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import posixpath
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

import lamina
from lamina import names
from lamina.errors import CorruptionReason, CorruptPartError
from lamina.format.part_meta import SUPPORTED_VERSIONS, QuarantineReason
from lamina.format.records import RecordError, load_record
from lamina.io import durable
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing import figures
from lamina.testing.ledger import Ledger as RowLedger

__all__ = [
    "OPS",
    "CrashReport",
    "Explorer",
    "Ledger",
    "Profile",
    "StaleReplayError",
    "Subject",
    "Violation",
    "all_workloads",
    "anchor",
    "barrier_sites",
    "check_state",
    "cuts_during",
    "disabled_barrier",
    "parse_replay",
    "power_cut",
    "replay",
]

#: The workload vocabulary. "drop" is a retention drop of the (single) segment, "quarantine" sets
#: the newest live part aside as a query that met damage would.
OPS: tuple[str, ...] = ("flush", "merge", "drop", "quarantine", "reopen")
#: Every workload starts from two flushed parts, so merge, quarantine and drop have work to do.
PREFIX: tuple[str, ...] = ("flush", "flush")
#: "now" for retention: far beyond every test timestamp, so a drop removes every segment.
FAR_FUTURE_NS = 2**62
REPLAY_TAG = "lamina-crash/1"


# -- the subject: an engine and its sample data ---------------------------------------------------
@attrs.frozen(slots=False)  # cached_property needs a __dict__
class Subject:
    """An engine under test with the contract fixtures (`sample_batches`, `query_all`).

    Batches are written in turn (slot i writes batch i mod n); the expected rows of any sequence
    of slots are computed by writing those batches into a fresh reference store, so engines whose
    equal-key rule combines or drops rows are judged correctly.
    """

    engine: lamina.Engine
    batches: Sequence[Any]
    query_all: Callable[[lamina.EngineHandle], list[Any]]
    root: str = "/store"
    #: Rows served by (and validation of) a set of live parts, keyed by their exact bytes: many
    #: crash states recover to the same parts, and reading every block again would dominate.
    _served: dict[bytes, list[Any]] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def retained_engine(self) -> lamina.Engine:
        """The engine with a retention, so a "drop" op can expire its segment."""
        return attrs.evolve(self.engine, retention_ns=self.engine.segment_interval_ns)

    @functools.cached_property
    def registry(self) -> Registry:
        """One registry for every store the explorer opens (building one per open would cost
        more than the recovery it serves)."""
        registry = Registry()
        registry._add_engine(self.retained_engine, "<direct>")
        return registry

    def open(self, fs: Any, **kw: Any) -> lamina.Store:
        kw.setdefault("background", False)
        return lamina.Store(self.root, fs=fs, registry=self.registry, **kw)

    def batch_of(self, slot: int) -> Any:
        return self.batches[slot % len(self.batches)]

    @functools.cached_property
    def ledger(self) -> RowLedger:
        return RowLedger(self.engine, self.batches, self.query_all)

    def expected(self, slots: Sequence[int]) -> list[Any]:
        """Rows a store holding exactly the given slots (flushed in that order) returns."""
        return self.ledger.after([s % len(self.batches) for s in slots])


# -- the ledger -----------------------------------------------------------------------------------
@attrs.frozen
class Ledger:
    """What a crash at this instant may legitimately leave.

    `allowed`: the slot sequences a reopened store may show (the committed one, plus the outcome
    of the operation in flight: a crash before its commit point shows the first, after it the
    second; nothing else). `quarantined`: part names the workload set aside on purpose (any other
    part in corrupt/ after a crash is a violation: crashes alone never corrupt a part).
    """

    allowed: tuple[tuple[int, ...], ...]
    quarantined: frozenset[str] = frozenset()
    #: Parts the workload had set aside before this instant: each must still be in corrupt/
    #: (quarantined means never deleted), unless a retention drop took the whole segment.
    kept: frozenset[str] = frozenset()


class Run:
    """Executes one workload on a SimFS, keeping the ledger in step with what was acknowledged."""

    def __init__(self, subject: Subject, fs: SimFS) -> None:
        self.subject, self.fs = subject, fs
        self.visible: tuple[int, ...] = ()  # committed slots, in flush order
        self.parts: dict[int, tuple[int, ...]] = {}  # live part id -> its slots
        self.quarantined: frozenset[str] = frozenset()
        self.kept: frozenset[str] = frozenset()  # set aside, and still in the live segment
        self.next_slot = 0
        self.ledger = Ledger(((),))
        self.store: lamina.Store | None = None

    def _in_flight(
        self,
        after: tuple[int, ...],
        quarantined: frozenset[str] = frozenset(),
        kept: frozenset[str] | None = None,
    ) -> None:
        self.ledger = Ledger(
            (self.visible, after), self.quarantined | quarantined, self.kept if kept is None else kept
        )

    def _settle(self) -> None:
        self.ledger = Ledger((self.visible,), self.quarantined, self.kept)

    @property
    def handle(self) -> lamina.EngineHandle:
        if self.store is None:
            self.store = self.subject.open(self.fs)
        return self.store.engine(self.subject.name)

    def run(self, ops: Sequence[str], *, close: bool = True) -> None:
        for op in ops:
            getattr(self, f"op_{op}")()
        if close and self.store is not None:
            self.store.close()
            self.store = None

    def op_flush(self) -> None:
        slot = self.next_slot
        self.next_slot += 1
        self._in_flight((*self.visible, slot))
        h = self.handle
        h.write(self.subject.batch_of(slot))
        ids = h.flush()
        if len(ids) != 1:
            raise ValueError(f"a sample batch made {len(ids)} parts; each must fit one time segment")
        self.parts[ids[0]] = (slot,)
        self.visible = (*self.visible, slot)
        self._settle()

    def op_merge(self) -> None:
        self._settle()
        h = self.handle
        h.merge_now()
        live = [p.part_id for t in h.tables() for p in t.live_parts]
        if set(live) != set(self.parts):  # merged into one new part
            slots = tuple(sorted(s for p in self.parts.values() for s in p))
            self.parts = dict.fromkeys(live, slots)

    def op_drop(self) -> None:
        self._in_flight((), kept=frozenset())  # the segment goes with its corrupt/
        self.handle.apply_retention(FAR_FUTURE_NS)
        self.visible, self.parts, self.kept = (), {}, frozenset()
        self._settle()

    def op_quarantine(self) -> None:
        if not self.parts:
            return
        pid = max(self.parts)
        pname = names.part_name(pid)
        gone = set(self.parts[pid])
        self._in_flight(tuple(s for s in self.visible if s not in gone), frozenset({pname}))
        table = next(t for t in self.handle.tables() if pid in {p.part_id for p in t.live_parts})
        err = CorruptPartError(pname, "", -1, CorruptionReason.METADATA, "set aside by a crash workload")
        table.quarantine(pid, err.with_engine(self.subject.name), stage="query")
        del self.parts[pid]
        self.visible = tuple(s for s in self.visible if s not in gone)
        self.quarantined |= {pname}
        self.kept |= {pname}
        self._settle()

    def op_reopen(self) -> None:
        self._settle()
        if self.store is not None:
            self.store.close()
        self.store = self.subject.open(self.fs)


# -- the invariants -------------------------------------------------------------------------------
def check_state(subject: Subject, fs: SimFS, ledger: Ledger, *, follow_up: bool = False) -> str | None:
    """Open the store on a crash state and check SPEC §10 against the ledger; None if all hold.

    1 acknowledged rows present, exactly once, and nothing never written (the rows equal one of
    the allowed outcomes); 2 every live part validates completely; 3 a crash alone quarantines
    nothing; 6 only listed parts, the newest two manifests and corrupt/ remain, no *.tmp, no
    half-dropped segment. `follow_up` also runs invariant 8 (a flush, merge and reopen work
    afterwards) and 7 (a second open changes nothing).
    """
    try:
        store = subject.open(fs)
    except Exception as e:  # invariant 3: opening never fails because of a crash
        return f"open failed: {type(e).__name__}: {e}"
    try:
        h = store.engine(subject.name)
        if store.metrics.value("lamina_corrupt_parts_total"):
            return "recovery quarantined a part: a crash alone must never corrupt one"
        key = _live_parts_digest(fs, h)
        got = subject._served.get(key)
        if got is None:
            got = sorted(subject.query_all(h))
            for t in h.tables():
                for ph in t.live_parts:
                    ph.reader.verify_all(t.engine.schema)
            subject._served[key] = got
        if not any(got == subject.expected(a) for a in ledger.allowed):
            return _rows_verdict(subject, got, ledger)
        held_anywhere: set[str] = set()
        for t in h.tables():
            if (problem := _debris(fs, t)) is not None:
                return problem
            cdir = posixpath.join(t.path, names.CORRUPT_DIR)
            held = set(fs.listdir(cdir) if fs.is_dir(cdir) else [])
            held_anywhere |= held
            if stray := held - ledger.quarantined:
                return f"unexpected quarantined parts {sorted(stray)}"
            for q in sorted(held):  # every quarantined part keeps a readable reason
                try:
                    data = fs.read_file(posixpath.join(cdir, q, names.REASON))
                    load_record(data, QuarantineReason, SUPPORTED_VERSIONS)
                except (OSError, RecordError) as e:
                    return f"quarantined part {q} has no valid {names.REASON}: {e}"
        if gone := ledger.kept - held_anywhere:
            return (
                f"quarantined parts {sorted(gone)} are gone from corrupt/ (set aside must mean never deleted)"
            )
        if (problem := _dropping_left(fs, subject)) is not None:
            return problem
        if follow_up:
            problem = _follow_up(subject, store, got, ledger)
            store = None  # _follow_up closed it
            if problem is not None:
                return problem
    except Exception as e:
        return f"{type(e).__name__}: {e} at {_where(e)}"
    finally:
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
    return None


def _live_parts_digest(fs: SimFS, h: lamina.EngineHandle) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for t in h.tables():
        for ph in sorted(t.live_parts, key=lambda p: p.name):
            pdir = posixpath.join(t.path, ph.name)
            digest.update(pdir.encode())
            for n in fs.listdir(pdir):
                data = fs.read_file(posixpath.join(pdir, n))
                digest.update(n.encode() + len(data).to_bytes(8, "little") + data)
    return digest.digest()


def _where(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    return f"{tb[-1].filename.rsplit('/', 2)[-1]}:{tb[-1].lineno}" if tb else "?"


def _rows_verdict(subject: Subject, got: list[Any], ledger: Ledger) -> str:
    best = min(ledger.allowed, key=lambda a: _distance(got, subject.expected(a)))
    want = subject.expected(best)
    missing = len(_minus(want, got))
    extra = len(_minus(got, want))
    return (
        f"rows differ from every allowed outcome {list(ledger.allowed)}: nearest {list(best)} "
        f"has {missing} rows missing (acknowledged data lost) and {extra} unexpected"
    )


def _minus(a: list[Any], b: list[Any]) -> list[Any]:
    from collections import Counter

    return list((Counter(a) - Counter(b)).elements())


def _distance(a: list[Any], b: list[Any]) -> int:
    return len(_minus(a, b)) + len(_minus(b, a))


def _debris(fs: SimFS, t: Any) -> str | None:
    live = {p.name for p in t.live_parts}
    for n in fs.listdir(t.path):
        epoch = names.parse_manifest_name(n)
        if epoch is not None:
            if epoch < t.epoch - 1:
                return f"stale manifest {n} left in {t.path} (epoch {t.epoch})"
        elif n != names.CORRUPT_DIR and n not in live:
            return f"debris {n} left in {t.path}"
    for p in live:
        tmps = [x for x in fs.listdir(posixpath.join(t.path, p)) if x.endswith(durable.TMP_SUFFIX)]
        if tmps:
            return f"tmp files {tmps} left in live part {p}"
    return None


def _dropping_left(fs: SimFS, subject: Subject) -> str | None:
    root = posixpath.join(subject.root, subject.name)
    for ds in fs.listdir(root) if fs.is_dir(root) else []:
        dpath = posixpath.join(root, ds)
        for seg in fs.listdir(dpath) if fs.is_dir(dpath) else []:
            if seg.endswith(names.DROPPING_SUFFIX):
                return f"half-dropped segment {ds}/{seg} left after recovery"
    return None


def _follow_up(subject: Subject, store: lamina.Store, got: list[Any], ledger: Ledger) -> str | None:
    """Invariants 7 and 8: reopening changes nothing; a flush + merge + reopen cycle works."""
    store.close()
    matched = next(a for a in ledger.allowed if subject.expected(a) == got)
    again = subject.open(store.fs)
    try:
        h = again.engine(subject.name)
        if sorted(subject.query_all(h)) != got:
            return "a second recovery changed the rows (recovery is not idempotent)"
        h.write(subject.batch_of(0))
        h.flush()
        h.merge_now()
    finally:
        again.close()
    third = subject.open(store.fs)
    try:
        after = sorted(subject.query_all(third.engine(subject.name)))
        if after != subject.expected((*matched, 0)):
            return "a flush + merge + reopen after recovery did not show exactly the rows written"
    finally:
        third.close()
    return None


# -- crash variants -------------------------------------------------------------------------------
@attrs.frozen
class Profile:
    """How many states to build per crash point (the CI and long profiles differ only here)."""

    torn: bool = True
    random_states: int = 4
    #: States per crash point in which entries may take values they held between two fsyncs of
    #: their directory (SimFS "interim"; what real ext4/XFS cuts showed the per-directory model
    #: lacked).
    interim_states: int = 1
    omissions: bool = True
    #: Run the compound exploration (crash during recovery) for every n-th distinct state.
    compound_every: int = 8
    #: Invariant 8 (a later flush/merge/reopen) for every n-th distinct state.
    follow_up_every: int = 16
    #: Kill the process at every n-th crash point, then cut the power during and after the
    #: recovery that runs on its (still unsynced) page cache; 0: never.
    kill_every: int = 1

    @classmethod
    def ci(cls) -> Profile:
        return cls() if not figures.LONG else cls.long()

    @classmethod
    def long(cls) -> Profile:
        return cls(random_states=16, interim_states=4, compound_every=1, follow_up_every=2)


def variants(fs: SimFS, profile: Profile, seed: int, index: int) -> Iterator[tuple[str, SimFS]]:
    """Every crash state of `fs` as it is now (see the module docstring), named for replay."""
    yield "process", fs.crash_state("process")
    yield "power", fs.crash_state("power")
    if profile.torn:
        yield "torn512", fs.crash_state("torn", torn=512)
        yield "torn4k", fs.crash_state("torn", torn=4096)
        yield "tornz0", fs.crash_state("torn", torn=512, seed=_seed(seed, index, 0))
    for r in range(profile.random_states):
        yield f"random{r}", fs.crash_state("random", seed=_seed(seed, index, r), atomic_renames=True)
    for r in range(profile.interim_states):
        yield f"interim{r}", fs.crash_state("interim", seed=_seed(seed, index, 1000 + r), atomic_renames=True)
    if profile.omissions:
        for n, (_desc, state) in enumerate(fs.omission_states(atomic_renames=True)):
            yield f"omit{n}", state


def variant_state(fs: SimFS, variant: str, seed: int, index: int) -> SimFS:
    """The one crash state named `variant` (the inverse of `variants`, for replay; "kill" is
    the explorer's kill-then-power-loss state, see `Explorer._kill_then_power`)."""
    if variant in ("process", "power", "kill"):
        return fs.crash_state(variant)
    if variant == "torn512":
        return fs.crash_state("torn", torn=512)
    if variant == "torn4k":
        return fs.crash_state("torn", torn=4096)
    if variant.startswith("tornz"):
        return fs.crash_state("torn", torn=512, seed=_seed(seed, index, int(variant[5:])))
    if variant.startswith("random"):
        return fs.crash_state("random", seed=_seed(seed, index, int(variant[6:])), atomic_renames=True)
    if variant.startswith("interim"):
        r = int(variant[7:])
        return fs.crash_state("interim", seed=_seed(seed, index, 1000 + r), atomic_renames=True)
    if variant.startswith("omit"):
        n = int(variant[4:])
        for i, (_desc, state) in enumerate(fs.omission_states(atomic_renames=True)):
            if i == n:
                return state
        raise ValueError(f"no pending change #{n} at this op")
    raise ValueError(f"unknown crash variant {variant!r}")


def _seed(seed: int, index: int, r: int) -> int:
    return (seed * 1_000_003 + index * 101 + r) & 0xFFFFFFFF


def fingerprint(fs: SimFS) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for path, data in fs.tree().items():
        h.update(path.encode())
        h.update(b"\0D\0" if data is None else len(data).to_bytes(8, "little") + data)
    return h.digest()


# -- the explorer ---------------------------------------------------------------------------------
class _Stop(BaseException):
    """Unwinds a workload once the first violation is found (barrier mutation needs no more)."""


@attrs.frozen
class Violation:
    replay: str
    problem: str

    def __str__(self) -> str:
        return f"{self.replay}\n    {self.problem}"


@attrs.define
class CrashReport:
    points: int = 0
    states: int = 0
    distinct: int = 0
    violations: list[Violation] = attrs.field(factory=list)

    def merge(self, other: CrashReport) -> None:
        self.points += other.points
        self.states += other.states
        self.distinct += other.distinct
        self.violations += other.violations

    def summary(self, limit: int = 10) -> str:
        head = f"{len(self.violations)} violations in {self.states} crash states ({self.distinct} distinct)"
        return "\n".join([head, *(str(v) for v in self.violations[:limit])])


def replay_string(
    subject: Subject,
    workload: Sequence[str],
    index: int,
    variant: str,
    seed: int,
    recovery: str = "",
    at: str = "",
) -> str:
    """`at` anchors the op (``<op>:<last path component>``): a replay whose op index now lands
    on another operation (the code under test changed its I/O) is refused as stale instead of
    silently checking some other state."""
    wl = ",".join(workload) or "-"
    s = f"{REPLAY_TAG} engine={subject.name} workload={wl} op={index} variant={variant} seed={seed}"
    return s + (f" at={at}" if at else "") + (f" recovery={recovery}" if recovery else "")


def anchor(op: str, path: str) -> str:
    """What a replay string's ``at=`` records of the op it crashes at."""
    return f"{op}:{posixpath.basename(path.rstrip('/')) or '/'}"


class Explorer:
    """Runs workloads with a crash explored at every mutating operation (see module docstring)."""

    def __init__(self, subject: Subject, profile: Profile | None = None, *, seed: int = 0) -> None:
        self.subject = subject
        self.profile = profile or Profile.ci()
        self.seed = seed

    def explore(self, workload: Sequence[str], *, skip: int = 0, stop_first: bool = False) -> CrashReport:
        """Crash `PREFIX + workload` at every mutating op of the workload proper, except its
        first `skip` ops (explored already by a shorter workload), build every variant, check
        each distinct state; `skip=-1` explores the prefix too (creating the store and its first
        parts). `stop_first`: return at the first violation."""
        report = CrashReport()
        fs = SimFS()
        run = Run(self.subject, fs)
        seen: dict[tuple[bytes, Ledger], str | None] = {}
        start = [None]  # op index where the workload proper begins
        n_distinct = [0]
        workload_points = [0]

        def observe(index: int, op: str, path: str) -> None:
            if start[0] is None or index < start[0]:
                return
            at = anchor(op, path)
            report.points += 1
            ledger = run.ledger
            for variant, state in variants(fs, self.profile, self.seed, index):
                report.states += 1
                key = (fingerprint(state), ledger)
                if key in seen:
                    continue
                n_distinct[0] += 1
                follow = n_distinct[0] % self.profile.follow_up_every == 0
                compound = n_distinct[0] % self.profile.compound_every == 0
                pristine = state.crash_state("process") if compound else state  # checking mutates
                problem = check_state(self.subject, state, ledger, follow_up=follow)
                seen[key] = problem
                if problem is None and compound:
                    problem, recovery = self._compound(pristine, ledger, report)
                else:
                    recovery = ""
                if problem is not None:
                    report.violations.append(
                        Violation(
                            replay_string(self.subject, workload, index, variant, self.seed, recovery, at),
                            problem,
                        )
                    )
                    if stop_first:
                        raise _Stop
            workload_points[0] += 1  # report.points also counts recovery ops of compounds
            if self.profile.kill_every and workload_points[0] % self.profile.kill_every == 0:
                problem, recovery = self._kill_then_power(fs.crash_state("kill"), ledger, report, seen)
                if problem is not None:
                    report.violations.append(
                        Violation(
                            replay_string(self.subject, workload, index, "kill", self.seed, recovery, at),
                            problem,
                        )
                    )
                    if stop_first:
                        raise _Stop
            report.distinct = len(seen)

        fs.observer = observe
        try:
            if skip < 0:
                start[0] = 0
            run.run((*PREFIX, *workload[: max(skip, 0)]), close=False)
            if skip >= 0:
                start[0] = fs.op_count
            run.run(workload[skip:])
        except _Stop:
            pass
        finally:
            fs.observer = None
        report.distinct = len(seen)
        if _DISABLED[0] is not None:
            return report  # a mutant's violations are the point, not figures of the product
        figures.add(
            crash_points=report.points,
            crash_states=report.states,
            crash_states_distinct=report.distinct,
            crash_violations=len(report.violations),
        )
        return report

    def _compound(self, state: SimFS, ledger: Ledger, report: CrashReport) -> tuple[str | None, str]:
        """Crash the recovery of `state` at each of its own mutating ops (power and process)."""
        cuts = ("power", "process")
        try:
            states = cuts_during(self._recover, state.crash_state("process"), cuts, after=False)
        except Exception as e:
            return f"recovery failed: {type(e).__name__}: {e}", "open"
        report.points += len(states) // len(cuts)
        for where, cut in states:
            report.states += 1
            if (problem := check_state(self.subject, cut, ledger)) is not None:
                return f"crash during recovery: {problem}", where
        return None, ""

    def _kill_then_power(
        self, killed: SimFS, ledger: Ledger, report: CrashReport, seen: dict[tuple[bytes, Ledger], str | None]
    ) -> tuple[str | None, str]:
        """A kill -9 here, recovery on the page cache the kill left (pending changes still
        pending), and a power loss at each of recovery's mutating ops and after it returns.

        Recovery reads state that may not be durable yet: it must never act on it (delete what
        an undurable manifest no longer lists, say) in a way a power loss turns into loss. The
        `process` variant cannot show this, because it makes everything durable."""
        try:
            states = cuts_during(self._recover, killed, KILL_CUTS)
        except Exception as e:
            return f"recovery after a kill failed: {type(e).__name__}: {e}", "open"
        report.points += len(states) // len(KILL_CUTS) - 1  # recovery's ops (the last round: after it)
        for where, cut in states:
            report.states += 1
            key = (fingerprint(cut), ledger)
            if key in seen:  # checked already (and reported, under its own replay string)
                continue
            if (problem := seen.setdefault(key, check_state(self.subject, cut, ledger))) is not None:
                return f"power loss after a kill and recovery: {problem}", where
        return None, ""

    def _recover(self, fs: SimFS) -> None:
        self.subject.open(fs).close()


def cuts_during(
    run: Callable[[SimFS], object], fs: SimFS, cuts: Sequence[str] = ("power",), *, after: bool = True
) -> list[tuple[str, SimFS]]:
    """Run `run(fs)` (a recovery: an open, and whatever reads follow it) and take a power cut of
    each kind in `cuts` (see `power_cut`) right before each of its mutating operations and, with
    `after`, once more when it returns. The states come labelled ``<op index>:<cut>`` or
    ``end:<cut>``, the form of a replay string's ``recovery=``. An exception from `run`
    propagates (the states taken so far are lost with it)."""
    states: list[tuple[str, SimFS]] = []
    fs.observer = lambda index, _op, _path: states.extend((f"{index}:{c}", power_cut(fs, c)) for c in cuts)
    try:
        run(fs)
    finally:
        fs.observer = None
    if after:
        states += [(f"end:{c}", power_cut(fs, c)) for c in cuts]
    return states


#: The power cuts applied to a killed process's page cache during and after its recovery.
KILL_CUTS: tuple[str, ...] = ("power", "torn", "random0", "random1")


def power_cut(fs: SimFS, cut: str) -> SimFS:
    """The state a power cut named `cut` leaves: a `CRASH_MODES` name, or ``random<seed>``
    (renames atomic, as in every crash model here: SPEC §11)."""
    if cut.startswith("random"):
        return fs.crash_state("random", seed=int(cut[6:] or 0), atomic_renames=True)
    return fs.crash_state(cut)


def all_workloads(length: int) -> list[tuple[str, ...]]:
    """Every sequence of `length` ops (ACE-style bounded exhaustive enumeration)."""
    return list(itertools.product(OPS, repeat=length))


# -- replay ---------------------------------------------------------------------------------------
class StaleReplayError(ValueError):
    """A replay string's ``at=`` no longer names the operation at its ``op=`` index."""


@attrs.frozen
class ReplayCase:
    engine: str
    workload: tuple[str, ...]
    op: int
    variant: str
    seed: int
    recovery: str = ""
    at: str = ""


def parse_replay(text: str) -> ReplayCase:
    """Parse a replay string (ValueError naming what is wrong)."""
    parts = text.strip().split()
    if not parts or parts[0] != REPLAY_TAG:
        raise ValueError(f"not a replay string (expected it to start with {REPLAY_TAG!r}): {text!r}")
    fields = dict(p.split("=", 1) for p in parts[1:])
    try:
        wl = () if fields["workload"] == "-" else tuple(fields["workload"].split(","))
        bad = [op for op in wl if op not in OPS]
        if bad:
            raise ValueError(f"unknown ops {bad} in workload")
        return ReplayCase(
            fields["engine"], wl, int(fields["op"]), fields["variant"], int(fields["seed"]),
            fields.get("recovery", ""), fields.get("at", ""),
        )  # fmt: skip
    except KeyError as e:
        raise ValueError(f"replay string lacks {e.args[0]}=: {text!r}") from None


def replay(subject: Subject, text: str) -> str | None:
    """Rebuild the crash state a replay string names and check it again (None: invariants hold)."""
    case = parse_replay(text)
    if case.engine != subject.name:
        raise ValueError(f"replay string is for engine {case.engine}, not {subject.name}")
    fs = SimFS()
    run = Run(subject, fs)
    got: list[tuple[SimFS, Ledger]] = []
    stale: list[str] = []

    def observe(index: int, op: str, path: str) -> None:
        if index == case.op and not got and not stale:
            if case.at and anchor(op, path) != case.at:  # not raised here: product code is on the stack
                stale.append(anchor(op, path))
                return
            got.append((variant_state(fs, case.variant, case.seed, index), run.ledger))

    fs.observer = observe
    try:
        run.run((*PREFIX, *case.workload))
    finally:
        fs.observer = None
    if stale:
        raise StaleReplayError(
            f"stale replay string: op {case.op} is now {stale[0]}, not {case.at} (the code's I/O "
            f"changed since it was printed; rerun the exploration for a current one)"
        )
    if not got:
        raise ValueError(f"the workload has no op {case.op}")
    state, ledger = got[0]
    if case.recovery in ("", "open"):  # "open": the recovery itself failed, before any cut
        return check_state(subject, state, ledger)
    cut = case.recovery.split(":")[-1]
    # A "kill" state keeps its pending changes for the power cut; the others are durable.
    work = state if case.variant == "kill" else state.crash_state("process")
    states = dict(cuts_during(lambda fs: subject.open(fs).close(), work, (cut,)))
    return check_state(subject, states[case.recovery], ledger) if case.recovery in states else None


# -- barrier mutation -----------------------------------------------------------------------------
def _site(kind: str) -> str:
    """A barrier's site: the first caller outside lamina/io (a durability decision lives there),
    down to the line, so two barriers in one function are judged separately:
    ``dir@store.py:_remove_segment:<line>``."""
    for f in reversed(traceback.extract_stack()[:-3]):
        if "/lamina/io/" not in f.filename and "/lamina/testing/" not in f.filename:
            return f"{kind}@{f.filename.split('/lamina/')[-1]}:{f.name}:{f.lineno}"
    return kind


def _matches(site: str, pattern: str | None) -> bool:
    """`pattern` names one site, or every line of a function (``dir@store.py:__init__``)."""
    return pattern is not None and (site == pattern or site.startswith(pattern + ":"))


_SEEN_SITES: dict[str, int] = {}
_DISABLED: list[str | None] = [None]
_ORIGINAL = durable._timed_fsync


def _mutant(kind: str, fn: Callable[..., None], *args: str) -> None:
    site = _site(kind)
    _SEEN_SITES[site] = _SEEN_SITES.get(site, 0) + 1
    if not _matches(site, _DISABLED[0]):
        _ORIGINAL(kind, fn, *args)


@contextlib.contextmanager
def disabled_barrier(site: str | None) -> Iterator[dict[str, int]]:
    """Within the block, the fsyncs / directory fsyncs issued from `site` (one line, or every
    line of a function: see `_matches`) are no-ops. None: all barriers run, but every site is
    recorded in the yielded dict."""
    _SEEN_SITES.clear()
    _DISABLED[0] = site
    durable._timed_fsync = _mutant  # type: ignore[assignment]
    try:
        yield _SEEN_SITES
    finally:
        durable._timed_fsync = _ORIGINAL  # type: ignore[assignment]
        _DISABLED[0] = None


def barrier_sites(subject: Subject, workloads: Sequence[Sequence[str]]) -> list[str]:
    """Every barrier site the workloads (and the recoveries of their crash states) reach."""
    with disabled_barrier(None) as seen:
        for wl in workloads:
            Run(subject, SimFS()).run((*PREFIX, *wl))
    return sorted(seen)
