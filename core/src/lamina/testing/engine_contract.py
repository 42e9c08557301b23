"""The engine and merge contracts: behaviour every engine owes its users, inherited by subclassing.

An engine suite provides the same three fixtures as `CorruptionContract`::

    from lamina.testing import EngineContract, MergeContract

    class TestMyEngine(EngineContract):
        @pytest.fixture
        def engine(self):            # the lamina.Engine under test
            return ENGINE

        @pytest.fixture
        def sample_batches(self):    # >= 3 columnar batches in one time segment, as users write
            return [...]             # them (the same ones the corruption contract uses)

        @pytest.fixture
        def query_all(self):         # handle -> every row, hashable, sorted
            return lambda handle: sorted(row_of(r) for r in handle.query())

    class TestMyEngineMerges(MergeContract):
        ...the same three fixtures (or inherit them from a mixin of your own)...

Engines whose `Capabilities` say `time_range_query=True` also provide `query_range` (handle, start,
end -> rows with start <= ts < end, in `query_all`'s row form) and `row_timestamp` (row -> its
timestamp); a capability the engine does not declare skips its tests with a reason, and
`capabilities.merge=False` skips the whole `MergeContract`.

Every check is against a ledger: the rows a reference store returns after the same batches were
written to it one flush each. Engines whose equal-key rule drops or combines rows (a measure's
"highest version wins") are therefore compared correctly, and the contract also proves the rule does
not depend on how rows happened to be split into parts.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import lamina
from lamina import names
from lamina.errors import DuplicateEngineError
from lamina.io.fs import FileSystem
from lamina.io.sim import SimFS
from lamina.plugins import Registry
from lamina.testing import damage as dmg
from lamina.testing._base import ContractFixtures
from lamina.testing.ledger import Ledger, split_batch

__all__ = ["EngineContract", "MergeContract", "assert_no_direct_io"]

QueryAll = Callable[[lamina.EngineHandle], list[Any]]

# What an engine's own modules must never use: every byte goes through the core (SPEC §4).
_FORBIDDEN_MODULES = frozenset({"os", "shutil", "pathlib", "tempfile", "mmap", "io", "fcntl"})
_FORBIDDEN_CALLS = frozenset({"open"})


def assert_no_direct_io(package: str) -> None:
    """Fail if any module of `package` imports an OS/file module or calls the `open` builtin.

    A plugin that needs a file is a sign the core API lacks something; fix the core instead (the
    durability and quarantine fixes then reach every engine at once)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"cannot locate the source of package {package!r}")
    offenders = []
    for root in spec.submodule_search_locations:
        for f in sorted(Path(root).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
            for node in ast.walk(tree):
                mods: list[str] = []
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    mods = [node.module]
                bad = [m for m in mods if m.split(".")[0] in _FORBIDDEN_MODULES]
                if bad:
                    offenders.append(f"{f.name}:{node.lineno}: imports {', '.join(bad)}")
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in _FORBIDDEN_CALLS
                ):
                    offenders.append(f"{f.name}:{node.lineno}: calls {node.func.id}()")
    assert offenders == [], f"{package} touches files itself (use the core's API): {offenders}"


class _ContractBase(ContractFixtures):
    """Fixtures shared by the engine and merge contracts."""

    @pytest.fixture
    def ledger(self, engine: lamina.Engine, sample_batches: list[Any], query_all: QueryAll) -> Ledger:
        if len(sample_batches) < 3:
            pytest.fail(f"sample_batches must hold at least 3 batches, got {len(sample_batches)}")
        return Ledger(engine, sample_batches, query_all)

    @pytest.fixture
    def open_store(
        self, fs: FileSystem, store_root: str, engine: lamina.Engine
    ) -> Iterator[Callable[..., lamina.Store]]:
        """`open_store(**kw)` -> a store holding only the engine under test (closed at teardown)."""
        stores: list[lamina.Store] = []

        def opener(*, plugins: Iterable[object] = (), **kw: Any) -> lamina.Store:
            registry = Registry()
            for i, p in enumerate(plugins):
                registry.register_plugin(p, f"contract-plugin-{i}")
            kw.setdefault("background", False)
            s = lamina.Store(store_root, fs=fs, registry=registry, engines=[engine], **kw)
            stores.append(s)
            return s

        yield opener
        for s in stores:
            with contextlib.suppress(Exception):  # teardown of a test that already failed
                s.close()

    @staticmethod
    def write_flushed(handle: lamina.EngineHandle, batches: Sequence[Any]) -> list[int]:
        """Write each batch and flush it durably; returns the new part IDs."""
        ids: list[int] = []
        for b in batches:
            handle.write(b)
            ids += handle.flush()
        return ids


class EngineContract(_ContractBase):
    """Write, flush, read, reopen and refuse bad input the way every Lamina engine must."""

    def test_engine_declaration_is_valid_and_registers_once(self, engine: lamina.Engine) -> None:
        assert isinstance(engine, lamina.Engine)
        assert engine.api_version == lamina.API_VERSION, (
            f"{engine.name} targets engine API {engine.api_version}, this Lamina has {lamina.API_VERSION}"
        )
        assert names.valid_dataset(engine.name), f"engine name {engine.name!r} is not a valid directory name"
        engine.schema.check_layout(engine.layout)
        assert engine.description, "give the engine a one-line description (shown by `lamina engines`)"
        reg = Registry()
        reg._add_engine(engine, "contract-a")
        with pytest.raises(DuplicateEngineError) as err:
            reg._add_engine(engine, "contract-b")
        assert "contract-a" in str(err.value) and "contract-b" in str(err.value)

    def test_engine_package_does_no_file_io(self, engine: lamina.Engine) -> None:
        fns = [getattr(f, "func", f) for f in (engine.query, engine.normalize)]  # unwrap partials
        module = next((m for f in fns if (m := inspect.getmodule(f)) is not None), None)
        if module is None:
            pytest.skip("cannot tell which package defines the engine's query function")
        package = module.__name__.split(".")[0]
        if package == "lamina":
            pytest.skip("the engine is defined inside the core (reference engine)")
        assert_no_direct_io(package)

    def test_rows_read_the_same_before_flush_after_flush_and_after_reopen(
        self, open_store: Callable[..., lamina.Store], ledger: Ledger, query_all: QueryAll
    ) -> None:
        want = ledger.expected()
        store = open_store()
        h = store.engine(ledger.engine.name)
        for b in ledger.batches:
            assert h.write(b) > 0, "a sample batch was accepted as empty"
        assert h.stats().buffered_rows > 0 and h.stats().parts == 0
        assert sorted(query_all(h)) == want, "unflushed rows (the memory part) read differently"
        assert h.flush(), "flush() committed no part"
        assert h.stats().buffered_rows == 0
        assert sorted(query_all(h)) == want, "rows read differently once flushed"
        store.close()
        store = open_store()
        assert sorted(query_all(store.engine(ledger.engine.name))) == want, "rows differ after reopen"

    def test_flushed_rows_survive_power_loss_and_unflushed_ones_are_all_or_nothing(
        self, engine: lamina.Engine, ledger: Ledger, query_all: QueryAll
    ) -> None:
        fs = SimFS()
        store = lamina.Store("/store", fs=fs, registry=Registry(), engines=[engine], background=False)
        h = store.engine(engine.name)
        self.write_flushed(h, ledger.batches[:2])
        h.write(ledger.batches[2])  # buffered, never acknowledged
        crashed = fs.crash_state("power")
        store.close()
        reopened = lamina.Store("/store", fs=crashed, registry=Registry(), engines=[engine], background=False)
        try:
            got = sorted(query_all(reopened.engine(engine.name)))
        finally:
            reopened.close()
        assert got == ledger.expected(range(2)), (
            "after power loss the store must hold exactly the flushed batches (acknowledged means "
            "durable; a write never flushed is not)"
        )

    def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
        self, open_store: Callable[..., lamina.Store], ledger: Ledger, query_all: QueryAll
    ) -> None:
        store = open_store()
        h = store.engine(ledger.engine.name)
        self.write_flushed(h, ledger.batches[:1])
        batch = ledger.batches[1]
        if not isinstance(batch, Mapping):
            pytest.skip("sample batches are not column mappings")
        attempts: list[tuple[str, Any]] = [
            ("batch", 42),
            ("__no_such_column__", {**batch, "__no_such_column__": [0]}),
        ]
        for col, values in batch.items():
            n = len(values) if hasattr(values, "__len__") else 1
            attempts.append((str(col), {**batch, col: [object()] * max(n, 1)}))
        for field, bad in attempts:
            with pytest.raises(lamina.InvalidInputError) as err:
                h.write(bad)
            named = f"{err.value.field} {err.value}"
            assert field in named, f"error for bad {field!r} does not name it: {err.value}"
        assert h.stats().buffered_rows == 0, "a refused write left rows in the buffer"
        h.flush()
        assert sorted(query_all(h)) == ledger.expected(range(1)), "a refused write changed stored rows"

    def test_a_query_running_during_writes_flushes_and_merges_sees_whole_batches(
        self, open_store: Callable[..., lamina.Store], ledger: Ledger, query_all: QueryAll
    ) -> None:
        """Each write is all or nothing and flushes/merges never show a row twice or hide one: a
        concurrent query always answers exactly as some prefix of the batches would."""
        valid = [ledger.expected(range(k)) for k in range(len(ledger.batches) + 1)]
        store = open_store()
        h = store.engine(ledger.engine.name)
        stop = threading.Event()
        seen: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            while not stop.is_set():
                try:
                    got = sorted(query_all(h))
                except BaseException as e:  # reported by the main thread
                    errors.append(e)
                    return
                if got not in valid:
                    errors.append(
                        AssertionError(f"a concurrent query saw no prefix of the batches: {got[:5]}")
                    )
                    return
                seen.append(valid.index(got))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            for b in ledger.batches:
                h.write(b)
                h.flush()
            if ledger.engine.capabilities.merge:
                h.merge_now()
        finally:
            stop.set()
            t.join(timeout=60)
        assert not errors, errors[0]
        assert seen, "the concurrent reader never completed a query"
        assert seen == sorted(seen), "a later query saw fewer batches than an earlier one"
        assert sorted(query_all(h)) == valid[-1]

    # -- capability: time-range queries -----------------------------------------------------------
    @pytest.fixture
    def query_range(self) -> Callable[[lamina.EngineHandle, int, int], list[Any]]:
        pytest.fail(
            f"{type(self).__name__}: the engine declares time_range_query; provide a `query_range` "
            "fixture (handle, start, end -> rows with start <= ts < end) and `row_timestamp`"
        )

    @pytest.fixture
    def row_timestamp(self) -> Callable[[Any], int]:
        pytest.fail(f"{type(self).__name__}: provide a `row_timestamp` fixture (row -> its timestamp)")

    def test_time_range_query_returns_exactly_the_rows_in_range(
        self, request: pytest.FixtureRequest, open_store: Callable[..., lamina.Store], ledger: Ledger
    ) -> None:
        if not ledger.engine.capabilities.time_range_query:
            pytest.skip(f"engine {ledger.engine.name} declares no time-range query capability")
        query_range = request.getfixturevalue("query_range")
        row_ts = request.getfixturevalue("row_timestamp")
        store = open_store()
        h = store.engine(ledger.engine.name)
        self.write_flushed(h, ledger.batches)
        everything = ledger.expected()
        stamps = sorted({row_ts(r) for r in everything})
        n = len(stamps)
        # windows that start and end inside parts (not on part boundaries), everything, nothing
        windows = [(stamps[0], stamps[-1] + 1), (stamps[n // 4], stamps[3 * n // 4])]
        windows += [(stamps[n // 3], stamps[2 * n // 3]), (stamps[min(1, n - 1)], stamps[-1])]
        windows += [(stamps[-1] + 1, stamps[-1] + 10**9), (stamps[0] - 10**9, stamps[0])]
        for start, end in windows:
            want = sorted(r for r in everything if start <= row_ts(r) < end)
            got = sorted(query_range(h, start, end))
            assert got == want, f"[{start}, {end}): {len(got)} rows, expected {len(want)}"


class MergeContract(_ContractBase):
    """Merges preserve rows (after the equal-key rule), clean up after themselves and record
    lineage; the rule's outcome never depends on how rows were split into parts (SPEC §7, §10.5)."""

    @pytest.fixture(autouse=True)
    def _merges_supported(self, engine: lamina.Engine) -> None:
        if not engine.capabilities.merge:
            pytest.skip(f"engine {engine.name} declares capabilities.merge=False")

    def test_merge_preserves_rows_and_leaves_one_part(
        self, open_store: Callable[..., lamina.Store], ledger: Ledger, query_all: QueryAll
    ) -> None:
        store = open_store()
        h = store.engine(ledger.engine.name)
        ids = self.write_flushed(h, ledger.batches)
        assert len(ids) >= 3
        assert sorted(query_all(h)) == ledger.expected()
        assert h.merge_now() == len(h.tables()), "merge_now merged nothing"
        assert all(len(t.live_parts) == 1 for t in h.tables())
        assert sorted(query_all(h)) == ledger.expected(), "a merge changed the rows"
        store.close()
        store = open_store()
        assert sorted(query_all(store.engine(ledger.engine.name))) == ledger.expected()

    def test_rows_do_not_depend_on_how_they_were_split_into_parts(
        self, open_store: Callable[..., lamina.Store], ledger: Ledger, query_all: QueryAll
    ) -> None:
        """One part per batch, one part for everything, and two parts per batch all read alike,
        before and after merging: the equal-key rule is applied the same at flush, merge and
        query time."""
        store = open_store()
        h = store.engine(ledger.engine.name)
        for b in ledger.batches:
            h.write(b)
        h.flush()
        assert sorted(query_all(h)) == ledger.expected(), "all batches in one part read differently"
        store.close()
        split = [half for b in ledger.batches for half in split_batch(b)]
        ref = Ledger(ledger.engine, split, ledger.query_all)
        assert ref.expected() == ledger.expected(), "two parts per batch read differently"
        merged = ref.expected(merge=True)
        assert merged == ledger.expected(), "merging the half-batch parts changed the rows"

    def test_merge_removes_inputs_and_records_their_lineage(
        self, fs: FileSystem, open_store: Callable[..., lamina.Store], ledger: Ledger
    ) -> None:
        store = open_store()
        h = store.engine(ledger.engine.name)
        inputs = self.write_flushed(h, ledger.batches)
        h.merge_now()
        (table,) = h.tables()
        (out,) = table.live_parts
        assert set(inputs) <= set(out.reader.meta.lineage), "the merged part does not name its inputs"
        store.close()  # readers released: retired inputs are gone now
        listed = set(dmg.listed_parts(fs, table.path))
        assert listed == {out.name}
        for pid in inputs:
            assert not fs.exists(posixpath.join(table.path, names.part_name(pid))), "a merged input remains"
        leftovers = [
            n for n in fs.listdir(table.path) if n not in listed and names.parse_manifest_name(n) is None
        ]
        assert leftovers == [], f"merge left {leftovers} behind"

    def test_background_merges_run_through_the_merge_policy_hook(
        self, open_store: Callable[..., lamina.Store], ledger: Ledger, query_all: QueryAll
    ) -> None:
        from lamina.testing.contract import MergeEverything

        store = open_store(plugins=[MergeEverything()], background=True, merge_interval_s=0.05)
        h = store.engine(ledger.engine.name)
        self.write_flushed(h, ledger.batches)
        for _ in range(600):  # up to 30 s on a loaded machine; usually a few rounds
            if all(len(t.live_parts) == 1 for t in h.tables()):
                break
            time.sleep(0.05)
        assert all(len(t.live_parts) == 1 for t in h.tables()), "the background loop never merged"
        assert sorted(query_all(h)) == ledger.expected()
