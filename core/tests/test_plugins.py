"""The entry-point loader (SPEC §8): isolation, duplicates, blocking, API versions, typos."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import attrs
import pytest

import lamina
from lamina.plugins import Registry
from lamina.testing.kv import KV


class _Dist:
    def __init__(self, name: str) -> None:
        self.name, self.version = name, "1.0"


def _module(name: str, engine: lamina.Engine | None = None, body: str = "") -> str:
    mod = types.ModuleType(name)
    if engine is not None:

        @lamina.hookimpl
        def lamina_register_engines(register):  # type: ignore[no-untyped-def]
            register(engine)

        mod.lamina_register_engines = lamina_register_engines  # type: ignore[attr-defined]
    exec(body, mod.__dict__)
    sys.modules[name] = mod
    return name


def _ep(ep_name: str, module: str, dist: str) -> EntryPoint:
    # EntryPoint._for binds the distribution, as importlib.metadata does for installed ones.
    return EntryPoint(ep_name, module, "lamina.engines")._for(_Dist(dist))  # type: ignore[attr-defined]


def test_broken_plugin_is_reported_and_skipped() -> None:
    good = _module("lamina_test_good", KV)
    bad = "lamina_test_missing_module"  # importing it fails like a plugin missing a dependency
    reg = Registry()
    reg.load_entry_points([_ep("kv", good, "kv-dist"), _ep("broken", bad, "broken-dist")])
    assert list(reg.engines) == ["kv"]
    assert [(p.plugin, p.distribution) for p in reg.problems] == [("broken", "broken-dist 1.0")]
    assert "ModuleNotFoundError" in reg.problems[0].error


def test_duplicate_engine_name_names_both_distributions() -> None:
    a = _module("lamina_test_a", KV)
    b = _module("lamina_test_b", KV)
    reg = Registry()
    with pytest.raises(lamina.DuplicateEngineError) as exc:
        reg.load_entry_points([_ep("kv", a, "first-dist"), _ep("kv2", b, "second-dist")])
    assert "first-dist" in str(exc.value) and "second-dist" in str(exc.value)


def test_disable_plugins_env_blocks_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _module("lamina_test_blockme", KV)
    monkeypatch.setenv("LAMINA_DISABLE_PLUGINS", "kv, other")
    reg = Registry()
    reg.load_entry_points([_ep("kv", a, "kv-dist")])
    assert reg.engines == {} and reg.problems == []


def test_incompatible_api_version_is_a_clear_error() -> None:
    old = _module("lamina_test_old", attrs.evolve(KV, api_version=99))
    reg = Registry()
    reg.load_entry_points([_ep("kv", old, "old-engine-dist")])
    assert reg.engines == {}
    (problem,) = reg.problems
    assert (
        "99" in problem.error
        and str(lamina.API_VERSION) in problem.error
        and "old-engine-dist" in problem.error
    )


def test_misspelled_hook_is_caught_by_check_pending() -> None:
    typo = _module(
        "lamina_test_typo",
        body="import lamina\n@lamina.hookimpl\ndef lamina_register_engine(register):\n    pass\n",
    )
    reg = Registry()
    with pytest.raises(Exception, match="lamina_register_engine"):
        reg.load_entry_points([_ep("typo", typo, "typo-dist")])


def test_unknown_engine_lists_installed_ones() -> None:
    reg = Registry()
    reg.register_plugin(sys.modules[_module("lamina_test_kv2", KV)], "kv")
    with pytest.raises(lamina.UnknownEngineError, match="installed engines: kv"):
        reg.engine("metrics")


def test_file_layout_hook_overrides_the_engines_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    one_file = lamina.FileLayout(files=(("all.bin", ("key", "value", "ts")),))

    class Override:
        @lamina.hookimpl
        def lamina_file_layout(self, engine):  # type: ignore[no-untyped-def]
            return one_file if engine.name == "kv" else None

    reg = Registry()
    reg.pm.register(Override())
    s = lamina.Store(str(tmp_path), registry=reg, engines=[KV], background=False)
    kv = s.engine("kv")
    kv.write({"key": [b"a"], "ts": [1], "value": [b"v"], "tags": [{}]})
    kv.flush()
    part = kv.tables()[0].live_parts[0]
    assert "all.bin" in part.reader.meta.files and "values.bin" not in part.reader.meta.files
    assert [r[0] for r in kv.query()] == [b"a"]
    s.close()


def test_merge_policy_hook_can_veto_merges(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class NoMerges:
        @lamina.hookimpl
        def lamina_merge_policy(self, engine, parts):  # type: ignore[no-untyped-def]
            return []

    reg = Registry()
    reg.pm.register(NoMerges())
    s = lamina.Store(str(tmp_path), registry=reg, engines=[KV], background=False)
    kv = s.engine("kv")
    for i in range(6):
        kv.write({"key": [b"a%d" % i], "ts": [i], "value": [b"v"], "tags": [{}]})
        kv.flush()
    assert kv.merge_now(force=False) == 0
    assert len(kv.tables()[0].live_parts) == 6
    s.close()


def test_observer_hooks_fire_on_commit_and_quarantine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str]] = []

    class Observer:
        @lamina.hookimpl
        def lamina_part_committed(self, engine, dataset, table, part, kind, rows):  # type: ignore[no-untyped-def]
            seen.append(("committed", kind))

        @lamina.hookimpl
        def lamina_merge_finished(self, engine, table, inputs, output, seconds):  # type: ignore[no-untyped-def]
            seen.append(("merged", str(len(inputs))))

    reg = Registry()
    reg.pm.register(Observer())
    s = lamina.Store(str(tmp_path), registry=reg, engines=[KV], background=False)
    kv = s.engine("kv")
    for i in range(2):
        kv.write({"key": [b"a%d" % i], "ts": [i], "value": [b"v"], "tags": [{}]})
        kv.flush()
    kv.merge_now()
    assert seen == [("committed", "flush"), ("committed", "flush"), ("committed", "merge"), ("merged", "2")]
    s.close()


def test_block_schema_hook_overrides_one_dataset_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class OneRowBlocks:
        @lamina.hookimpl
        def lamina_block_schema(self, engine, dataset):  # type: ignore[no-untyped-def]
            return attrs.evolve(engine.schema, block_max_rows=1) if dataset == "tiny" else None

    reg = Registry()
    reg.pm.register(OneRowBlocks())
    s = lamina.Store(str(tmp_path), registry=reg, engines=[KV], background=False)
    kv = s.engine("kv")
    batch = {"key": [b"a"] * 5, "ts": list(range(5)), "value": [b"v"] * 5, "tags": [{}] * 5}
    for ds in ("default", "tiny"):
        kv.write(batch, dataset=ds)
    kv.flush()
    blocks = {t.dataset: t.live_parts[0].reader.meta.blocks for t in kv.tables()}
    assert blocks == {"default": 1, "tiny": 5}
    assert len(kv.query(dataset="tiny")) == 5
    s.close()
