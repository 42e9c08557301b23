"""SimFS must model durability faithfully, or every crash test built on it proves nothing.

These tests pin the model: what survives a process kill, a power cut, a torn append, a random
subset of pending changes and a single omission; that crash points and faults fire exactly where
asked; and that the durable primitives in io/durable.py hold up under it.
"""

from __future__ import annotations

import errno
import posixpath
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.io.durable import TMP_SUFFIX, makedirs_durable, write_atomic
from lamina.io.fs import FileSystem, ReadableFile, WritableFile
from lamina.io.sim import CRASH_MODES, SimFS, SimOp, SimulatedCrash

OLD = b"old content " * 10
NEW = b"the new content, longer than the old one " * 30


def _durable_dir(path: str = "/d") -> SimFS:
    fs = SimFS()
    fs.makedirs(path)
    return fs


def _write(fs: SimFS, path: str, data: bytes, *, fsync: bool) -> None:
    f = fs.create(path)
    f.write(data)
    if fsync:
        f.fsync()
    f.close()


# ------------------------------------------------------------------------- basic durability


def test_simfs_satisfies_the_filesystem_protocol() -> None:
    fs = _durable_dir()
    assert isinstance(fs, FileSystem)
    w = fs.create("/d/f")
    assert isinstance(w, WritableFile)
    assert w.path == "/d/f"
    r = fs.open_read("/d/f")
    assert isinstance(r, ReadableFile)
    assert r.path == "/d/f"


def test_root_always_exists_even_after_power_loss() -> None:
    fs = SimFS()
    assert fs.is_dir("/")
    assert fs.crash_state("power").is_dir("/")
    with pytest.raises(FileExistsError):
        fs.mkdir("/")


def test_unsynced_file_data_is_lost_on_power_loss() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")  # the name is durable, the bytes are not
    f.write(b"hello")
    after = fs.crash_state("power")
    assert after.tree() == {"/d": None, "/d/f": b""}


def test_synced_file_data_survives_power_loss() -> None:
    fs = _durable_dir()
    _write(fs, "/d/f", b"hello", fsync=True)
    fs.fsync_dir("/d")
    assert fs.crash_state("power").read_file("/d/f") == b"hello"


def test_data_written_after_the_last_fsync_is_lost_on_power_loss() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.write(b"durable")
    f.fsync()
    f.write(b"+volatile")
    assert fs.read_file("/d/f") == b"durable+volatile"
    assert fs.crash_state("power").read_file("/d/f") == b"durable"


def test_created_file_disappears_on_power_loss_when_its_directory_was_never_fsynced() -> None:
    fs = _durable_dir()
    _write(fs, "/d/f", b"hello", fsync=True)  # bytes durable, name not
    assert fs.exists("/d/f")
    assert not fs.crash_state("power").exists("/d/f")


def test_new_directory_is_lost_on_power_loss_unless_its_parent_is_fsynced() -> None:
    fs = _durable_dir()
    fs.mkdir("/d/sub")
    _write(fs, "/d/sub/f", b"x", fsync=True)
    fs.fsync_dir("/d/sub")  # the file is durable *inside* sub, but sub itself is not in /d
    assert fs.crash_state("power").tree() == {"/d": None}
    fs.fsync_dir("/d")
    assert fs.crash_state("power").tree() == {"/d": None, "/d/sub": None, "/d/sub/f": b"x"}


def test_rename_without_directory_fsync_reverts_on_power_loss() -> None:
    fs = _durable_dir()
    _write(fs, "/d/a", b"A", fsync=True)
    fs.fsync_dir("/d")
    fs.replace("/d/a", "/d/b")
    assert fs.tree() == {"/d": None, "/d/b": b"A"}
    assert fs.crash_state("power").tree() == {"/d": None, "/d/a": b"A"}


def test_rename_with_directory_fsync_survives_power_loss() -> None:
    fs = _durable_dir()
    _write(fs, "/d/a", b"A", fsync=True)
    fs.fsync_dir("/d")
    fs.replace("/d/a", "/d/b")
    fs.fsync_dir("/d")
    assert fs.crash_state("power").tree() == {"/d": None, "/d/b": b"A"}


def test_cross_directory_rename_is_durable_only_when_both_directories_are_fsynced() -> None:
    fs = SimFS()
    fs.makedirs("/x")
    fs.makedirs("/y")
    fs.write_file("/x/f", b"F")
    fs.replace("/x/f", "/y/f")
    fs.fsync_dir("/y")
    # Pessimistic per-directory model: the source entry is still durable in /x.
    assert fs.crash_state("power").tree() == {"/x": None, "/x/f": b"F", "/y": None, "/y/f": b"F"}
    fs.fsync_dir("/x")
    assert fs.crash_state("power").tree() == {"/x": None, "/y": None, "/y/f": b"F"}


def test_unlink_without_directory_fsync_is_undone_by_power_loss() -> None:
    fs = _durable_dir()
    fs.write_file("/d/f", b"F")
    fs.remove("/d/f")
    assert not fs.exists("/d/f")
    assert fs.crash_state("power").read_file("/d/f") == b"F"
    fs.fsync_dir("/d")
    assert not fs.crash_state("power").exists("/d/f")


def test_open_handles_follow_the_inode_across_rename_and_unlink() -> None:
    fs = _durable_dir()
    w = fs.create("/d/a")
    r = fs.open_read("/d/a")
    fs.replace("/d/a", "/d/b")
    w.write(b"after rename")
    assert fs.read_file("/d/b") == b"after rename"
    fs.remove("/d/b")
    w.write(b"!")  # writing to an unlinked inode is legal and invisible
    assert r.pread(0, 100) == b"after rename!"
    assert fs.tree() == {"/d": None}


def test_replace_moves_a_directory_with_its_contents() -> None:
    fs = _durable_dir()
    fs.write_file("/d/src/f", b"F")
    fs.mkdir("/d/dst")
    fs.replace("/d/src", "/d/dst")
    assert fs.tree() == {"/d": None, "/d/dst": None, "/d/dst/f": b"F"}
    with pytest.raises(OSError) as exc:
        fs.replace("/d/dst", "/d/dst/inner")
    assert exc.value.errno == errno.EINVAL


def test_crash_states_leave_the_original_untouched() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    f.write(b"abc")
    before_tree, before_pending, before_ops = fs.tree(), fs.pending(), list(fs.ops)
    for mode in CRASH_MODES:
        state = fs.crash_state(mode, seed=1)
        assert state is not fs
    list(fs.omission_states())
    assert (fs.tree(), fs.pending(), fs.ops) == (before_tree, before_pending, before_ops)
    f.write(b"d")  # the original is still usable
    assert fs.read_file("/d/f") == b"abcd"


# ------------------------------------------------------------------------------ crash modes


def test_process_crash_keeps_everything_including_unsynced_changes() -> None:
    fs = _durable_dir()
    _write(fs, "/d/f", b"never synced", fsync=False)
    fs.mkdir("/d/sub")
    state = fs.crash_state("process")
    assert state.tree() == fs.tree()
    assert state.pending() == []
    # Everything in the result is durable: a later power cut loses nothing.
    assert state.crash_state("power").tree() == fs.tree()


def test_kill_state_keeps_everything_but_leaves_the_pending_changes_pending() -> None:
    """The machine survives the kill: a power cut later still loses what was never synced,
    including a rename and an unlink, and inodes shared by two names stay shared."""
    fs = _durable_dir()
    kept = fs.create("/d/kept")
    kept.write(b"synced")
    kept.fsync()
    _write(fs, "/d/gone", b"synced too", fsync=True)
    fs.fsync_dir("/d")
    kept.write(b" + unsynced tail")
    kept.close()
    _write(fs, "/d/new", b"never synced", fsync=False)
    fs.remove("/d/gone")
    fs.mkdir("/d/sub")
    fs.replace("/d/new", "/d/sub/moved")
    state = fs.crash_state("kill")
    assert state.tree() == fs.tree()
    assert state.pending() == fs.pending() != []
    assert state.crash_state("power").tree() == fs.crash_state("power").tree()
    assert state.crash_state("power").tree() == {"/d": None, "/d/kept": b"synced", "/d/gone": b"synced too"}
    # the copy is independent: what runs on it (a recovery, say) leaves the original alone
    state.remove("/d/kept")
    state.fsync_dir("/d")
    assert fs.read_file("/d/kept") == b"synced + unsynced tail"
    assert "/d/kept" not in state.crash_state("power").tree()


def test_power_state_is_fully_durable() -> None:
    fs = _durable_dir()
    _write(fs, "/d/f", b"x", fsync=True)
    fs.fsync_dir("/d")
    _write(fs, "/d/g", b"y", fsync=False)
    state = fs.crash_state("power")
    assert state.pending() == []
    assert state.crash_state("power").tree() == state.tree() == {"/d": None, "/d/f": b"x"}


@pytest.mark.parametrize("tear", [512, 4096])
def test_torn_mode_keeps_whole_sectors_of_an_unsynced_append(tear: int) -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    data = bytes(range(256)) * 40  # 10240 bytes: 20 sectors of 512, 2.5 of 4096
    f.write(data)
    expected_len = (len(data) // tear) * tear
    assert fs.crash_state("torn", torn=tear).read_file("/d/f") == data[:expected_len]
    for seed in range(30):
        got = fs.crash_state("torn", torn=tear, seed=seed).read_file("/d/f")
        assert len(got) % tear == 0
        assert len(got) <= len(data)
        # Every kept sector but the last is real data; the last is real data or zeros.
        head, last = got[:-tear], got[-tear:]
        assert head == data[: len(head)]
        assert last in (data[len(head) : len(got)], bytes(len(last)))


def test_torn_mode_cuts_at_absolute_sector_offsets_and_never_touches_synced_bytes() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.write(b"S" * 100)
    f.fsync()
    f.write(b"T" * 1000)  # file is 1100 bytes; sector boundaries at 512 and 1024
    seen = set()
    for seed in range(60):
        got = fs.crash_state("torn", torn=512, seed=seed).read_file("/d/f")
        assert got[:100] == b"S" * 100
        assert len(got) in (100, 512, 1024)
        seen.add(got)
    zero_filled_first_sector = b"S" * 100 + bytes(412)
    assert zero_filled_first_sector in seen
    assert b"S" * 100 + b"T" * 924 in seen
    assert fs.crash_state("torn", torn=512).read_file("/d/f") == b"S" * 100 + b"T" * 924


def test_torn_mode_loses_unsynced_names_like_power_loss() -> None:
    fs = _durable_dir()
    _write(fs, "/d/f", b"x" * 4096, fsync=False)
    assert fs.crash_state("torn", torn=512).tree() == {"/d": None}


def test_random_mode_is_reproducible_and_never_goes_below_synced() -> None:
    fs = _durable_dir()
    fs.write_file("/d/old", b"O")
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.write(b"synced")
    f.fsync()
    f.write(b"+tail" * 20)
    fs.remove("/d/old")
    _write(fs, "/d/new", b"N", fsync=True)
    outcomes = set()
    for seed in range(40):
        state = fs.crash_state("random", seed=seed)
        assert state.tree() == fs.crash_state("random", seed=seed).tree()
        content = state.read_file("/d/f")
        assert content.startswith(b"synced")
        assert fs.read_file("/d/f").startswith(content)
        outcomes.add((content, state.exists("/d/old"), state.exists("/d/new")))
    contents = {c for c, _, _ in outcomes}
    assert b"synced" in contents
    assert fs.read_file("/d/f") in contents
    both = (True, False)
    assert {(o, n) for _, o, n in outcomes} == {(a, b) for a in both for b in both}


def test_random_mode_with_torn_grain_cuts_at_multiples() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.write(b"z" * 3000)
    for seed in range(30):
        assert len(fs.crash_state("random", seed=seed, torn=512).read_file("/d/f")) % 512 == 0


def test_omission_states_yield_one_state_per_pending_change() -> None:
    fs = _durable_dir()
    fs.write_file("/d/keep", b"K")
    fs.write_file("/d/gone", b"G")
    f = fs.create("/d/f")
    f.write(b"data")
    f.fsync()
    f.write(b"+more")
    fs.remove("/d/gone")
    pending = fs.pending()
    assert pending == [
        "entry /d/f: added",
        "data /d/f: 4 bytes durable, 9 bytes current",
        "entry /d/gone: removed",
    ]
    states = list(fs.omission_states())
    assert [desc for desc, _ in states] == pending
    process = fs.crash_state("process").tree()
    trees = [state.tree() for _, state in states]
    assert trees[0] == {k: v for k, v in process.items() if k != "/d/f"}
    assert trees[1] == {**process, "/d/f": b"data"}
    assert trees[2] == {**process, "/d/gone": b"G"}


def test_no_pending_changes_means_no_omission_states() -> None:
    fs = _durable_dir()
    fs.write_file("/d/f", b"x")
    assert fs.pending() == []
    assert list(fs.omission_states()) == []


def test_unknown_crash_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="crash mode"):
        SimFS().crash_state("meteor")


# ---------------------------------------------------------------- op counting and crash points


def test_mutating_ops_are_counted_and_logged_but_reads_and_close_are_not() -> None:
    fs = _durable_dir()
    fs.write_file("/d/existing", b"e")  # fixture helpers are not ops
    assert fs.op_count == 0
    f = fs.create("/d/f")
    f.write(b"abc")
    f.fsync()
    f.close()
    fs.fsync_dir("/d")
    fs.read_file("/d/f")
    fs.listdir("/d")
    fs.open_read("/d/f").pread(0, 1)
    fs.exists("/d/f")
    fs.replace("/d/f", "/d/g")
    fs.remove("/d/g")
    fs.mkdir("/d/s")
    fs.rmdir("/d/s")
    assert [op.op for op in fs.ops] == [
        "create",
        "write",
        "fsync",
        "fsync_dir",
        "replace",
        "remove",
        "mkdir",
        "rmdir",
    ]
    assert fs.op_count == len(fs.ops) == 8
    assert fs.ops[0] == SimOp(0, "create", "/d/f", "")
    assert fs.ops[4] == SimOp(4, "replace", "/d/f", "/d/g")
    assert [op.index for op in fs.ops] == list(range(8))


def test_crash_at_raises_before_the_op_is_applied() -> None:
    fs = _durable_dir()
    fs.crash_at(1)
    f = fs.create("/d/f")
    with pytest.raises(SimulatedCrash):
        f.write(b"lost")
    assert fs.crashed
    assert fs.op_count == 1
    assert fs.crash_state("process").tree() == {"/d": None, "/d/f": b""}


def test_crashed_simfs_refuses_everything_until_a_crash_state_is_taken() -> None:
    fs = _durable_dir()
    fs.write_file("/d/f", b"x")
    w = fs.create("/d/g")
    fs.crash_at(fs.op_count)
    with pytest.raises(SimulatedCrash):
        fs.mkdir("/d/s")
    for call in (
        lambda: fs.exists("/d/f"),
        lambda: fs.read_file("/d/f"),
        lambda: fs.listdir("/d"),
        lambda: fs.create("/d/h"),
        lambda: w.write(b"x"),
    ):
        with pytest.raises(SimulatedCrash):
            call()
    w.close()  # close never raises: it runs in finally blocks unwinding the crash
    after = fs.crash_state("power")
    assert not after.crashed
    assert after.read_file("/d/f") == b"x"
    after.mkdir("/d/s")
    assert after.op_count == 1


def test_simulated_crash_is_not_an_exception_so_product_code_cannot_swallow_it() -> None:
    assert issubclass(SimulatedCrash, BaseException)
    assert not issubclass(SimulatedCrash, Exception)
    fs = _durable_dir()
    fs.crash_at(0)
    with pytest.raises(SimulatedCrash):
        try:
            fs.create("/d/f")
        except Exception:  # what careless product code does
            pytest.fail("a simulated power cut was caught as an ordinary Exception")


def _meta_fixture(*, stale_tmp: bool) -> SimFS:
    fs = _durable_dir()
    fs.write_file("/d/meta", OLD)
    if stale_tmp:
        fs.write_file("/d/meta" + TMP_SUFFIX, b"stale tmp from an earlier crash")
    return fs


def _ops_of_write_atomic(*, stale_tmp: bool) -> int:
    fs = _meta_fixture(stale_tmp=stale_tmp)
    write_atomic(fs, "/d/meta", NEW)
    return fs.op_count


@pytest.mark.parametrize("stale_tmp", [False, True])
def test_write_atomic_leaves_old_or_new_content_at_every_crash_point(stale_tmp: bool) -> None:
    n_ops = _ops_of_write_atomic(stale_tmp=stale_tmp)
    assert n_ops == 5 + stale_tmp  # [remove], create, write, fsync, replace, fsync_dir
    outcomes: dict[str, set[bytes]] = {}
    for index in range(n_ops):
        fs = _meta_fixture(stale_tmp=stale_tmp)
        fs.crash_at(index)
        with pytest.raises(SimulatedCrash):
            write_atomic(fs, "/d/meta", NEW)
        states = [(m, fs.crash_state(m, seed=s, torn=512)) for m in CRASH_MODES for s in range(4)]
        states += [("omission", state) for _, state in fs.omission_states()]
        for label, state in states:
            content = state.read_file("/d/meta")
            assert content in (OLD, NEW), (index, label, content[:40])
            outcomes.setdefault(label, set()).add(content)
    # The final fsync_dir is the commit point and never completes here, so strict power loss
    # always sees the old content, while a process kill after the rename already sees the new.
    assert outcomes["power"] == {OLD}
    assert outcomes["process"] == {OLD, NEW}


def test_write_atomic_is_durable_once_it_returns() -> None:
    fs = _meta_fixture(stale_tmp=True)
    write_atomic(fs, "/d/meta", NEW)
    assert fs.pending() == []
    assert fs.crash_state("power").tree() == {"/d": None, "/d/meta": NEW}


def test_makedirs_durable_tree_survives_power_loss() -> None:
    fs = SimFS()
    fs.makedirs("/base")
    makedirs_durable(fs, "/base/a/b/c")
    assert fs.crash_state("power").tree() == {
        "/base": None,
        "/base/a": None,
        "/base/a/b": None,
        "/base/a/b/c": None,
    }


def test_plain_mkdir_chain_without_fsync_is_lost_on_power_loss() -> None:
    fs = SimFS()
    fs.mkdir("/a")
    fs.mkdir("/a/b")
    assert fs.crash_state("power").tree() == {}


# ---------------------------------------------------------------------------- fault injection


def test_injected_fault_raises_the_requested_errno_once() -> None:
    fs = _durable_dir()
    fault = fs.inject("create", "/d/*.tmp", errno.ENOSPC)
    with pytest.raises(OSError) as exc:
        fs.create("/d/x.tmp")
    assert exc.value.errno == errno.ENOSPC
    assert exc.value.filename == "/d/x.tmp"
    assert not fs.exists("/d/x.tmp")
    assert fault.fired == 1
    fs.create("/d/x.tmp")  # once=True: the second attempt succeeds
    assert fault.fired == 1


def test_injected_fault_does_not_fire_on_non_matching_paths_or_ops() -> None:
    fs = _durable_dir()
    fault = fs.inject("create", "/d/*.tmp", errno.EIO)
    fs.create("/d/data")
    fs.mkdir("/d/dir.tmp")
    assert fault.fired == 0


def test_persistent_fault_fires_until_cleared() -> None:
    fs = _durable_dir()
    fault = fs.inject("mkdir", "/d/*", errno.EIO, once=False)
    for _ in range(3):
        with pytest.raises(OSError) as exc:
            fs.mkdir("/d/s")
        assert exc.value.errno == errno.EIO
    assert fault.fired == 3
    fs.clear_faults()
    fs.mkdir("/d/s")
    assert fs.is_dir("/d/s")


def test_cancelled_fault_stops_firing() -> None:
    fs = _durable_dir()
    fault = fs.inject("mkdir", "*", errno.EIO, once=False)
    fault.cancel()
    fs.mkdir("/d/s")
    assert fault.fired == 0


def test_short_write_applies_a_prefix_then_raises() -> None:
    fs = _durable_dir()
    fs.inject("write", "/d/f", errno.ENOSPC, short_write=4)
    f = fs.create("/d/f")
    with pytest.raises(OSError) as exc:
        f.write(b"0123456789")
    assert exc.value.errno == errno.ENOSPC
    assert fs.read_file("/d/f") == b"0123"


def test_failed_fsync_leaves_data_not_durable() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.write(b"abc")
    fs.inject("fsync", "/d/f", errno.EIO)
    with pytest.raises(OSError):
        f.fsync()
    assert fs.crash_state("power").read_file("/d/f") == b""


def test_replace_fault_matches_the_destination_too() -> None:
    fs = _durable_dir()
    fs.write_file("/d/a", b"A")
    fs.inject("replace", "/d/target", errno.EIO)
    with pytest.raises(OSError) as exc:
        fs.replace("/d/a", "/d/target")
    assert (exc.value.errno, exc.value.filename, exc.value.filename2) == (
        errno.EIO,
        "/d/a",
        "/d/target",
    )
    assert fs.tree() == {"/d": None, "/d/a": b"A"}


@pytest.mark.parametrize("op", ["pread", "open_read", "read_file", "listdir"])
def test_read_faults_fire_without_counting_as_ops(op: str) -> None:
    fs = _durable_dir()
    fs.write_file("/d/f", b"x")
    r = fs.open_read("/d/f")
    fs.inject(op, "/d*", errno.EIO)
    call = {
        "pread": lambda: r.pread(0, 1),
        "open_read": lambda: fs.open_read("/d/f"),
        "read_file": lambda: fs.read_file("/d/f"),
        "listdir": lambda: fs.listdir("/d"),
    }[op]
    with pytest.raises(OSError) as exc:
        call()
    assert exc.value.errno == errno.EIO
    assert fs.op_count == 0
    call()  # once


def test_injected_mutating_fault_is_still_counted_so_crash_indices_do_not_shift() -> None:
    fs = _durable_dir()
    fs.inject("mkdir", "/d/s", errno.EIO)
    with pytest.raises(OSError):
        fs.mkdir("/d/s")
    assert fs.ops == [SimOp(0, "mkdir", "/d/s", "")]


def test_inject_rejects_unknown_ops_and_misplaced_short_writes() -> None:
    fs = SimFS()
    with pytest.raises(ValueError):
        fs.inject("chmod", "*", errno.EIO)
    with pytest.raises(ValueError):
        fs.inject("fsync", "*", errno.EIO, short_write=3)


# ------------------------------------------------------------------------------ test helpers


def test_tree_and_pending_describe_current_state() -> None:
    fs = _durable_dir()
    fs.write_file("/d/a", b"A")
    fs.mkdir("/d/s")
    assert fs.tree() == {"/d": None, "/d/a": b"A", "/d/s": None}
    assert fs.pending() == ["entry /d/s: added"]
    fs.replace("/d/a", "/d/s2")
    assert fs.pending() == ["entry /d/a: removed", "entry /d/s: added", "entry /d/s2: added"]


def test_corrupt_and_truncate_damage_durably_without_counting_as_ops() -> None:
    fs = _durable_dir()
    fs.write_file("/d/f", b"0123456789")
    fs.corrupt("/d/f", 2, b"XY")
    assert fs.read_file("/d/f") == b"01XY456789"
    fs.truncate("/d/f", 6)
    assert fs.op_count == 0
    assert fs.pending() == []
    assert fs.crash_state("power").read_file("/d/f") == b"01XY45"
    with pytest.raises(ValueError):
        fs.corrupt("/d/f", 5, b"too long")


def test_truncate_of_a_partly_synced_file_keeps_the_tail_unsynced() -> None:
    fs = _durable_dir()
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.write(b"abcd")
    f.fsync()
    f.write(b"efgh")
    fs.truncate("/d/f", 6)
    assert fs.read_file("/d/f") == b"abcdef"
    assert fs.crash_state("power").read_file("/d/f") == b"abcd"


def test_relative_paths_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        SimFS().exists("relative/path")


def test_paths_are_normalised() -> None:
    fs = _durable_dir()
    fs.write_file("/d/f", b"x")
    assert fs.read_file("//d/./sub/../f") == b"x"
    assert fs.listdir("/d/") == ["f"]


def test_concurrent_writers_are_serialised_by_the_lock() -> None:
    fs = _durable_dir()
    handles = [fs.create(f"/d/f{i}") for i in range(4)]
    start = fs.op_count

    def work(i: int) -> None:
        for _ in range(200):
            handles[i].write(b"x")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fs.op_count - start == 800
    assert [op.index for op in fs.ops] == list(range(fs.op_count))
    assert all(fs.file_size(f"/d/f{i}") == 200 for i in range(4))


# --------------------------------------------------------------------- model-wide properties

_NAMES = ["/d/a", "/d/b", "/d/s", "/d/s/a", "/d/t"]
_STEP = st.tuples(
    st.sampled_from(["create", "write", "fsync", "fsync_dir", "mkdir", "replace", "remove"]),
    st.sampled_from(_NAMES),
    st.sampled_from(_NAMES),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, max_size=25), st.integers(0, 3))
def test_crash_states_are_consistent_for_any_workload(steps: list[tuple[str, str, str]], seed: int) -> None:
    fs = _durable_dir()
    handles: dict[str, WritableFile] = {}
    opened: list[WritableFile] = []  # every handle, also those whose path was created again
    for op, a, b in steps:
        try:
            if op == "create":
                handles[a] = fs.create(a)
                opened.append(handles[a])
            elif op in ("write", "fsync") and a in handles:
                h = handles[a]
                h.write(a.encode() * 3) if op == "write" else h.fsync()
            elif op == "fsync_dir":
                fs.fsync_dir(posixpath.dirname(a))
            elif op == "mkdir":
                fs.mkdir(a)
            elif op == "replace":
                fs.replace(a, b)
            elif op == "remove":
                fs.remove(a) if not fs.is_dir(a) else fs.rmdir(a)
        except OSError:
            pass
    current = fs.tree()
    assert fs.crash_state("process").tree() == current
    assert len(list(fs.omission_states())) == len(fs.pending())
    for mode in CRASH_MODES:
        state = fs.crash_state(mode, seed=seed, torn=4)
        if mode == "kill":  # the machine lives on: nothing becomes durable by the kill
            assert (state.tree(), state.pending()) == (current, fs.pending())
            assert state.crash_state("power").tree() == fs.crash_state("power").tree()
            continue
        assert state.pending() == []
        assert state.crash_state("power").tree() == state.tree()
    # Syncing every open file and every directory leaves nothing for a power cut to take.
    for h in opened:
        h.fsync()
    for path in sorted((p for p, v in current.items() if v is None), reverse=True):
        fs.fsync_dir(path)
    fs.fsync_dir("/d")
    fs.fsync_dir("/")
    assert fs.pending() == []
    assert fs.crash_state("power").tree() == current


# -- interim values (what real ext4/XFS cuts showed the per-directory model lacked) -------------
def _interim_trees(fs: SimFS, n: int = 64) -> list[dict]:
    return [fs.crash_state("interim", seed=s, atomic_renames=True).tree() for s in range(n)]


def test_interim_states_keep_a_tmp_name_beside_the_old_file_its_rename_was_lost_for() -> None:
    fs = SimFS()
    fs.makedirs("/d")
    fs.write_file("/d/x", b"old")
    w = fs.create("/d/x.tmp")
    w.write(b"new")
    w.fsync()
    w.close()
    fs.replace("/d/x.tmp", "/d/x")
    trees = _interim_trees(fs)
    assert {"/d": None, "/d/x": b"old", "/d/x.tmp": b"new"} in trees  # what ext4 and XFS left
    random = [fs.crash_state("random", seed=s, atomic_renames=True).tree() for s in range(64)]
    assert all("/d/x.tmp" not in t for t in random)  # the plain model never keeps it


def test_interim_states_lose_a_recreated_directory_whose_removal_was_committed() -> None:
    fs = SimFS()
    fs.makedirs("/d/p")
    fs.rmdir("/d/p")
    fs.mkdir("/d/p")
    assert {"/d": None} in _interim_trees(fs)
    assert all("/d/p" in fs.crash_state("random", seed=s).tree() for s in range(64))


def test_a_directory_fsync_ends_the_interim_values_of_its_entries() -> None:
    fs = SimFS()
    fs.makedirs("/d")
    fs.create("/d/a.tmp").close()
    fs.replace("/d/a.tmp", "/d/a")
    fs.fsync_dir("/d")
    assert all(t == {"/d": None, "/d/a": b""} for t in _interim_trees(fs))
    killed = SimFS()
    killed.makedirs("/d")
    killed.create("/d/b.tmp").close()
    killed.replace("/d/b.tmp", "/d/b")
    after_kill = killed.crash_state("kill")  # pending changes stay pending, with their history
    assert {"/d": None, "/d/b.tmp": b""} in _interim_trees(after_kill)
