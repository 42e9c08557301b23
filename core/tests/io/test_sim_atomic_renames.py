"""SimFS crash models that keep renames atomic (SPEC §11), and the observer hook the crash
explorer builds on (issue 7)."""

from __future__ import annotations

from lamina.io.sim import SimFS


def _moved() -> SimFS:
    """A durable file /a/f renamed to /b/f; neither directory fsynced since."""
    fs = SimFS()
    fs.write_file("/a/f", b"data")
    fs.makedirs("/b")
    fs.replace("/a/f", "/b/f")
    return fs


def _names(fs: SimFS) -> set[str]:
    return {p for p, d in fs.tree().items() if d is not None}


def test_per_directory_omission_can_split_a_rename() -> None:
    states = [_names(s) for _, s in _moved().omission_states()]
    assert set() in states and {"/a/f", "/b/f"} in states  # the pessimistic model: neither / both


def test_atomic_renames_omit_both_names_together() -> None:
    states = list(_moved().omission_states(atomic_renames=True))
    assert len(states) == 1
    desc, state = states[0]
    assert "/a/f" in desc and "/b/f" in desc
    assert _names(state) == {"/a/f"}  # the rename undone as a whole


def test_atomic_random_states_never_lose_or_double_the_file() -> None:
    seen = {frozenset(_names(_moved().crash_state("random", seed=s, atomic_renames=True))) for s in range(40)}
    assert seen == {frozenset({"/a/f"}), frozenset({"/b/f"})}


def test_observer_sees_every_mutating_op_before_it_runs() -> None:
    fs = SimFS()
    log: list[tuple[int, str, bool]] = []
    fs.observer = lambda i, op, path: log.append((i, op, fs.exists("/x")))
    fs.mkdir("/x")
    fs.fsync_dir("/")
    assert log == [(0, "mkdir", False), (1, "fsync_dir", True)]
