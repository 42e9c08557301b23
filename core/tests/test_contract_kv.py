"""The contract suites (lamina.testing) on the kv reference engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.testing import CorruptionContract, CrashContract, EngineContract, MergeContract
from lamina.testing.crash import StaleReplayError, Subject, replay
from lamina.testing.kv import KV, kv_batch

T0 = 1_700_000_000_000_000_000


def _row(r: tuple[bytes, int, bytes, dict[str, Any]]) -> tuple[Any, ...]:
    key, ts, value, tags = r
    return (key, ts, value, tuple(sorted((k, type(v).__name__, repr(v)) for k, v in tags.items())))


class KvSamples:
    """The fixtures every contract takes, for the kv engine."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        return KV

    @pytest.fixture
    def sample_batches(self) -> list[dict[str, Any]]:
        """Three batches of 40 keys x 2 rows; neighbours share 20 keys, so merges both copy blocks
        raw and decode-merge equal keys."""
        out = []
        for p in range(3):
            keys = [b"key-%03d" % i for i in range(p * 20, p * 20 + 40) for _ in range(2)]
            ts = [T0 + p * 1_000_000 + j for j in range(len(keys))]
            values = [b"v%d-%d-" % (p, j) + b"x" * (j % 17) for j in range(len(keys))]
            tags = [{"shard": f"s{j % 3}", "n": j % 5} for j in range(len(keys))]
            out.append(kv_batch(keys, ts, values, tags))
        return out

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        return lambda handle: sorted(_row(r) for r in handle.query())

    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        return lambda handle, start, end: sorted(_row(r) for r in handle.query(start=start, end=end))

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        return lambda row: row[1]


class TestKvCorruption(KvSamples, CorruptionContract):
    pass


class TestKvEngine(KvSamples, EngineContract):
    pass


class TestKvMerges(KvSamples, MergeContract):
    pass


#: Crash states that broke an invariant before their bug was fixed, as the explorer printed them
#: (docs/reliability.md, bugs 7-9), replayed on every run. Each failed on the code before its fix.
#: A string whose `at=` no longer names the op at its index is refused as stale: the code's I/O
#: moved, so rerun the exploration (`-k "one_op and <workload>"` on the old code) and refresh it.
REPLAY_CORPUS = {
    "merge inputs deleted on an undurable manifest": (
        "lamina-crash/1 engine=kv workload=merge op=145 variant=kill seed=0 at=fsync_dir:shard-0 "
        "recovery=end:random3"
    ),
    "segment drop finished before its rename was durable": (
        "lamina-crash/1 engine=kv workload=drop op=105 variant=kill seed=0 at=fsync_dir:default "
        "recovery=end:random0"
    ),
    "quarantined part unlisted before its move was durable": (
        "lamina-crash/1 engine=kv workload=quarantine op=107 variant=kill seed=0 at=fsync_dir:corrupt "
        "recovery=9:power"
    ),
    "quarantine reason kept while its rename was not durable": (
        "lamina-crash/1 engine=kv workload=quarantine op=113 variant=kill seed=0 "
        "at=fsync_dir:0000000000000002 recovery=end:power"
    ),
}


class TestKvCrash(KvSamples, CrashContract):
    """The crash contract (lamina.testing.crash_contract) on the kv reference engine, with the
    same fixtures as the corruption contract, plus the corpus of crash states that once failed."""

    @pytest.mark.parametrize("case", sorted(REPLAY_CORPUS))
    def test_a_crash_state_that_once_broke_an_invariant_holds(self, subject: Subject, case: str) -> None:
        assert replay(subject, REPLAY_CORPUS[case]) is None

    def test_a_stale_replay_string_is_refused_not_silently_checked(self, subject: Subject) -> None:
        text = REPLAY_CORPUS["merge inputs deleted on an undurable manifest"]
        with pytest.raises(
            StaleReplayError, match=re.escape("op 145 is now fsync_dir:shard-0, not write:meta.bin")
        ):
            replay(subject, text.replace("at=fsync_dir:shard-0", "at=write:meta.bin"))


def test_random_damage_always_changes_the_file_it_damages() -> None:
    """Regression (the long run's 100,000 random corruptions of the trace engine): a sector
    overwritten with bytes equal to what was there (zeros over zeros, or one random byte over
    itself in a file's last 1-byte sector) changed nothing, and was reported as "undetected"."""
    from lamina.io.sim import SimFS
    from lamina.testing import fuzz

    fs = SimFS()
    fs.makedirs("/t/0000000000000001")
    fs.write_file("/t/0000000000000001/data.bin", bytes(513))  # a last sector of one zero byte
    fs.write_file("/t/0000000000000001/ones.bin", b"\xff" * 3)
    fx = fuzz.Fixture(fs, "/t", ("0000000000000001",))
    sectors = 0
    for m in fuzz.random_damage(fx, 400, seed=3):
        state = fs.crash_state("process")
        before = {n: state.read_file(f"/t/0000000000000001/{n}") for n in ("data.bin", "ones.bin")}
        m.apply(state)
        after = {n: state.read_file(f"/t/0000000000000001/{n}") for n in ("data.bin", "ones.bin")}
        assert before != after, f"{m.name} changed nothing"
        sectors += "sector" in m.name
    assert sectors > 100
