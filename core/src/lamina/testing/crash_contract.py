"""The crash contract: every engine's suite subclasses `CrashContract` and inherits crash-state
exploration at every file-system operation, compound crashes during recovery, replay strings,
real kill -9 of a writer process, the corruption fuzzer and I/O errors at every operation of flush
and merge (issue 7; SPEC §4, §5, §6, §10, §11).

An engine suite provides the same three fixtures as for `CorruptionContract`::

    class TestMyEngineCrash(CrashContract):
        @pytest.fixture
        def engine(self):            # the lamina.Engine under test
            return ENGINE

        @pytest.fixture
        def sample_batches(self):    # >= 3 columnar batches, each one part, all in one time
            return [...]             # segment (the CorruptionContract's batches do)

        @pytest.fixture
        def query_all(self):         # handle -> every row, hashable, sorted
            return lambda handle: sorted(row_of(r) for r in handle.query())

Everything but the kill -9 test runs on `SimFS` (a power loss needs the simulator); the engine
never notices. The kill -9 test forks a real writer on a real directory (tmpfs if present).
Workloads are built from flush, merge, retention drop, quarantine and reopen, always after two flushed parts:
every length-1 and length-2 sequence, plus hypothesis-drawn longer ones. At every mutating
operation the explorer builds the process-kill, strict power-loss, torn (512 B, 4 KiB, zero tail),
random-subset and single-omission states, reopens each and checks the invariants against the
ledger of acknowledged batches. A failure names one replay string; paste it into
`lamina.testing.crash.replay(subject, "...")` to rebuild exactly that state.

`LAMINA_TORTURE=long` runs every profile 10x-100x larger (more random states per crash point,
compound crashes for every state, hundreds of hypothesis workloads).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamina
from lamina.io.sim import SimFS
from lamina.testing import faults, figures, fuzz
from lamina.testing._base import ContractFixtures
from lamina.testing.crash import OPS, PREFIX, Explorer, Profile, Run, Subject, parse_replay, replay
from lamina.testing.torture import ReferenceSpec, scratch_dir, torture

__all__ = ["CrashContract"]

#: The lighter profile for the (many) two-op workloads in CI; the long mode uses the full one.
#: The kill-then-power-loss variant at every fourth crash point (every one for one-op workloads
#: and in long mode).
PAIR_PROFILE = Profile(
    torn=True, random_states=6, omissions=True, compound_every=32, follow_up_every=64, kill_every=4
)
#: Hypothesis workloads: few states per point, but long random histories before them.
STATEFUL_PROFILE = Profile(
    torn=False, random_states=1, omissions=False, compound_every=64, follow_up_every=8, kill_every=4
)


class CrashContract(ContractFixtures):
    """Crash, power-loss and I/O-error tests every engine inherits (see the module docstring)."""

    @pytest.fixture
    def subject(
        self,
        engine: lamina.Engine,
        sample_batches: Sequence[Any],
        query_all: Callable[[lamina.EngineHandle], list[Any]],
    ) -> Subject:
        if len(sample_batches) < 3:
            raise ValueError(f"sample_batches must hold at least 3 batches, got {len(sample_batches)}")
        return Subject(engine, sample_batches, query_all)

    # -- crash-state exploration -------------------------------------------------------------------
    @pytest.mark.parametrize("op", OPS)
    def test_crash_at_every_operation_of_a_one_op_workload_keeps_the_invariants(
        self, subject: Subject, op: str
    ) -> None:
        report = Explorer(subject, Profile.ci()).explore((op,))
        if op == "reopen":  # of a clean store: recovery finds nothing to do, and must write nothing
            assert report.points == 0, f"reopening a clean store wrote to disk: {report.summary()}"
        else:
            assert report.points >= 10, "the workload barely touched the disk"
            assert report.distinct > 0
        assert not report.violations, report.summary()

    def test_crash_while_creating_the_store_and_its_first_parts_keeps_the_invariants(
        self, subject: Subject
    ) -> None:
        report = Explorer(subject, Profile.ci()).explore((), skip=-1)
        assert report.points >= 20
        assert not report.violations, report.summary()

    @pytest.mark.parametrize("first", OPS)
    def test_crash_at_every_operation_of_every_two_op_workload_keeps_the_invariants(
        self, subject: Subject, first: str
    ) -> None:
        """All 25 pairs (five per test); the first op's crash points are the one-op test's."""
        profile = Profile.long() if figures.LONG else PAIR_PROFILE
        explorer = Explorer(subject, profile, seed=1)
        points = 0
        for second in OPS:
            report = explorer.explore((first, second), skip=1)
            points += report.points
            assert not report.violations, report.summary()
        assert points > 0

    def test_longer_random_workloads_keep_the_invariants(self, subject: Subject) -> None:
        """Hypothesis draws histories of up to 12 ops; the crash points of the last two are
        explored (all of them in long mode). A failure shrinks to a minimal workload."""

        @settings(
            max_examples=figures.scale(3, 60),
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(st.sampled_from(OPS), min_size=3, max_size=12), st.integers(0, 2**16))
        def check(workload: list[str], seed: int) -> None:
            explorer = Explorer(subject, Profile.long() if figures.LONG else STATEFUL_PROFILE, seed=seed)
            skip = 0 if figures.LONG else len(workload) - 2
            report = explorer.explore(tuple(workload), skip=skip)
            assert not report.violations, report.summary()

        check()

    def test_a_replay_string_rebuilds_and_rechecks_one_crash_state(self, subject: Subject) -> None:
        fs = SimFS()
        Run(subject, fs).run(PREFIX)
        first_flush_op = fs.op_count  # the workload's first op comes right after the prefix
        text = (
            f"lamina-crash/1 engine={subject.name} workload=flush,merge "
            f"op={first_flush_op + 5} variant=torn512 seed=0"
        )
        case = parse_replay(text)
        assert (case.workload, case.op, case.variant) == (("flush", "merge"), first_flush_op + 5, "torn512")
        assert replay(subject, text) is None
        compound = text + " recovery=0:power"
        assert replay(subject, compound) is None
        killed = text.replace("variant=torn512", "variant=kill")
        for recovery in ("end:power", "end:random1", "open"):  # a kill, recovery, then the power cut
            assert replay(subject, f"{killed} recovery={recovery}") is None
        with pytest.raises(ValueError, match="replay string"):
            parse_replay("flush at op 3")
        with pytest.raises(ValueError, match="unknown ops"):
            parse_replay(f"lamina-crash/1 engine={subject.name} workload=fly op=1 variant=power seed=0")

    # -- real kill -9 ------------------------------------------------------------------------------
    @pytest.fixture
    def torture_batch(self) -> Callable[[int], Any] | None:
        """Batch `seq` for the kill -9 test; None: sample batch `seq mod n`. Override it when the
        engine's equal-key rule hides a repeated sample batch (the test says so): every batch
        must change what the engine serves, or losing it would go unseen."""
        return None

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() and SIGKILL")
    def test_kill_minus_9_never_loses_an_acknowledged_batch(
        self,
        engine: lamina.Engine,
        sample_batches: Sequence[Any],
        query_all: Callable[[lamina.EngineHandle], list[Any]],
        torture_batch: Callable[[int], Any] | None,
        tmp_path: Path,
    ) -> None:
        """A forked writer on a real directory, SIGKILLed at random moments and right before or
        after each of its first fsyncs; after every kill the reopened store must hold exactly
        the acknowledged batches (plus, all or nothing, the one in flight), pass `check --deep`
        and have quarantined nothing (see lamina.testing.torture)."""
        spec = ReferenceSpec(engine, sample_batches, query_all, torture_batch)
        if (blind := spec.blind_spot(3 * len(sample_batches))) is not None:
            pytest.fail(
                f"kill -9 batch {blind} changes nothing {engine.name} serves (its equal-key rule "
                f"hides a repeated sample batch), so losing it would go unseen: override the "
                f"`torture_batch(seq)` fixture so that every batch is distinct"
            )
        kills = figures.scale(60, 1_000)
        with scratch_dir(tmp_path) as workdir:
            report = torture(spec, workdir, kills=kills, seed=3, kills_per_store=10)
        assert report.kills == kills, report.problems[:5]
        assert report.named >= kills // 2 - 1
        assert report.acked > kills // 4, "the writer rarely got a batch acknowledged: the kills prove little"
        assert report.lost_rows == 0 and report.quarantined == 0
        assert not report.problems, "\n".join(report.problems[:10])

    # -- corruption fuzzing ------------------------------------------------------------------------
    @pytest.mark.parametrize("family", ["truncate", "flip", "random", "manual"])
    def test_corruption_fuzzer_detects_every_damage_and_never_serves_a_wrong_row(
        self, subject: Subject, family: str
    ) -> None:
        """Truncation at every offset of every file of a part, bit flips of its metadata and
        file headers, seeded multi-bit / sector damage in data files (1,000 in CI, 100,000 in
        long mode) and manual damage; see lamina.testing.fuzz for the oracles."""
        fx = fuzz.build_fixture(subject)
        victim = fx.parts[len(fx.parts) // 2]
        mutations = {
            "truncate": lambda: fuzz.truncations(fx, victim),
            "flip": lambda: fuzz.bit_flips(fx, victim, every_bit=figures.LONG),
            "random": lambda: fuzz.random_damage(fx, figures.scale(1_000, 100_000), seed=11),
            "manual": lambda: fuzz.manual_damage(fx, victim),
        }[family]()
        report = fuzz.fuzz(subject, mutations, fx, part_level=family != "manual")
        assert report.tried > 0 or family == "manual"
        assert report.store_checked > 0
        assert not report.problems, f"{len(report.problems)} problems:\n" + "\n".join(report.problems[:10])
        assert report.detected == report.tried

    # -- I/O errors --------------------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("phase", "kind", "persistent"),
        list(faults.all_modes()),
        ids=[f"{p}-{k}-{'persistent' if x else 'once'}" for p, k, x in faults.all_modes()],
    )
    def test_io_error_at_every_operation_fails_cleanly_and_loses_nothing_acknowledged(
        self, subject: Subject, phase: str, kind: str, persistent: bool
    ) -> None:
        base = faults.base_store(subject)
        problems, cases = [], 0
        # A persistent fault from op k on differs little from one from op k+1: CI takes every
        # second op for those (every op in long mode); transient faults hit every op.
        stride = 2 if persistent and not figures.LONG else 1
        for case in faults.fault_cases(subject, base, phase, kind, persistent, stride=stride):
            cases += 1
            problem = faults.run_case(subject, base, case)
            if problem is not None:
                problems.append(problem)
        assert cases > 0, "no operation of the phase could take this fault"
        assert not problems, f"{len(problems)} of {cases} fault cases broke a rule:\n" + "\n".join(
            problems[:10]
        )
