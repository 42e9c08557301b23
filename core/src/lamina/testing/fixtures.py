"""Opt-in pytest fixtures for engine authors: `pytest_plugins = ["lamina.testing.fixtures"]`.

Nothing here is active unless a conftest asks for it, so installing `lamina[testing]` never changes
another project's test run.

- `sim_fs`: a fresh `SimFS` (in-memory, crashable, fault-injecting file system).
- `open_store`: `open_store(*engines, fs=None, root=None, path=None, plugins=(), **kw)` -> a
  `lamina.Store` holding exactly those engines (no entry-point discovery, background work off
  unless asked), closed at teardown. An engine's own conftest can bind default engines with
  `open_store = open_store_fixture(ENGINE)` (no `pytest_plugins` needed, which pytest allows only
  in a rootdir conftest).
- `ledger`: `ledger(engine, batches, query_all)` -> a `Ledger` (expected rows of any subset).
- `damage`: the `lamina.testing.damage` helpers (flip bits, truncate, forge sizes, list parts).
- `crash_points`: `crash_points(workload, check, modes=("process", "power", "torn"))` runs
  `workload(fs, acked)` once to count its file-system operations, then again cut at every one of
  them; for each cut and mode it builds the disk a crash leaves and calls
  `check(state, acked, label)`. Returns the number of crash states checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest

import lamina
from lamina.io.fs import FileSystem, OSFileSystem
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.plugins import Registry
from lamina.testing import damage as _damage
from lamina.testing.crash import cuts_during
from lamina.testing.ledger import Ledger

__all__ = [
    "StoreOpener",
    "crash_points",
    "damage",
    "explore_crash_points",
    "ledger",
    "open_store",
    "open_store_fixture",
    "sim_fs",
]

CRASH_MODES = ("process", "power", "torn")


@pytest.fixture
def sim_fs() -> SimFS:
    return SimFS()


class StoreOpener:
    """Opens stores for one test and closes every one of them at teardown.

    `opener(*engines, fs=None, root=None, path=None, plugins=(), **kw)` -> a `lamina.Store` holding
    exactly `engines` (or the defaults given at construction), with a fresh registry (no
    entry-point discovery) and background work off unless asked. `path` is `root` as a path-like.
    Without `fs`, the opener's default file system: a real directory under the test's tmp_path,
    or one SimFS shared by every store of the test (so reopening sees the same disk).
    """

    def __init__(
        self, tmp_path: Any, default_engines: Sequence[lamina.Engine] = (), fs: FileSystem | None = None
    ) -> None:
        self.tmp_path, self.default_engines, self.fs = tmp_path, tuple(default_engines), fs
        self.stores: list[lamina.Store] = []

    def __call__(
        self,
        *engines: lamina.Engine,
        fs: FileSystem | None = None,
        root: str | None = None,
        path: Any = None,
        plugins: Iterable[object] = (),
        **kw: Any,
    ) -> lamina.Store:
        engines = engines or self.default_engines
        if not engines:
            raise TypeError("open_store() needs at least one engine")
        fs = fs or self.fs or OSFileSystem()
        root = root if path is None else str(path)
        if root is None:
            root = str(self.tmp_path / "store") if isinstance(fs, OSFileSystem) else "/store"
        registry = Registry()
        for i, p in enumerate(plugins):
            registry.register_plugin(p, f"test-plugin-{i}")
        kw.setdefault("background", False)
        store = lamina.Store(root, fs=fs, registry=registry, engines=list(engines), **kw)
        self.stores.append(store)
        return store

    def close_all(self) -> None:
        for s in self.stores:
            # a failed test may have left it half closed; a crash workload leaves it on a crashed SimFS
            with contextlib.suppress(Exception, SimulatedCrash):
                s.close()


def open_store_fixture(*default_engines: lamina.Engine, sim: bool = False) -> Any:
    """An `open_store` fixture for an engine's own suite: `open_store = open_store_fixture(ENGINE)`
    in its conftest. `sim=True`: stores default to one SimFS per test instead of tmp_path."""

    @pytest.fixture
    def open_store(tmp_path: Any) -> Iterator[StoreOpener]:
        opener = StoreOpener(tmp_path, default_engines, SimFS() if sim else None)
        yield opener
        opener.close_all()

    return open_store


#: `open_store(*engines, fs=None, root=None, path=None, plugins=(), **kw)`; see StoreOpener.
open_store = open_store_fixture()


@pytest.fixture
def ledger() -> Callable[..., Ledger]:
    return Ledger


@pytest.fixture
def damage() -> ModuleType:
    return _damage


Workload = Callable[[SimFS, list[Any]], None]
Check = Callable[[SimFS, list[Any], str], None]


def explore_crash_points(
    workload: Workload, check: Check, modes: Sequence[str] = CRASH_MODES, *, stride: int = 1, start: int = 0
) -> int:
    """Cut `workload` at every `stride`-th mutating operation (from op `start`) and check each
    crash state.

    `workload(fs, acked)` appends to `acked` only what the store acknowledged (after `flush()`
    returned). `check(state, acked, label)` reopens `state` and asserts the invariants against the
    ledger; `label` names the cut and mode, enough to replay it.

    Modes are `SimFS.crash_state` modes, plus ``kill``: the check runs on the page cache a killed
    process left (pending changes still pending), and the recovery it runs there is then cut by
    a power loss before each of its mutating operations and after it; every such state is checked
    too. A check used with ``kill`` must not write (its own writes would be cut as well)."""
    probe = SimFS()
    workload(probe, [])
    total = probe.op_count
    checked = 0
    for k in range(start, total, stride):
        for mode in modes:
            fs = SimFS()
            fs.crash_at(k)
            acked: list[Any] = []
            try:
                workload(fs, acked)
            except SimulatedCrash:
                pass
            else:
                raise AssertionError(f"the workload ran to the end with a crash point at op {k} of {total}")
            after = fs.ops[-1] if fs.ops else "start"
            label = f"{mode} crash at op {k}/{total} (after {after})"
            if mode == "kill":
                checked += _kill_then_power_loss(fs.crash_state("kill"), acked, check, label)
                continue
            state = fs.crash_state("torn", seed=k, torn=512) if mode == "torn" else fs.crash_state(mode)
            check(state, acked, label)
            checked += 1
    return checked


def _kill_then_power_loss(killed: SimFS, acked: list[Any], check: Check, label: str) -> int:
    cuts = cuts_during(lambda fs: check(fs, acked, label), killed)
    for where, state in cuts:
        check(state, acked, f"{label}, recovered, then a power cut at {where}")
    return 1 + len(cuts)


@pytest.fixture
def crash_points() -> Callable[..., int]:
    return explore_crash_points
