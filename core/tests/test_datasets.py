"""Persisted dataset options (lamina.datasets): an engine whose schema depends on per-dataset
options gets them validated, stored durably and atomically, reloaded at every open, and refused
when redefined differently; a damaged or missing options file is a clear error, never a guess.

The engine under test ("gauge") is defined here: its options name the INT64 value column, so a
part is only readable with the options it was written under.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

import lamina
from lamina import (
    BlockSchema,
    Column,
    ColumnKind,
    DatasetError,
    DatasetSupport,
    FileLayout,
    InvalidInputError,
)
from lamina.check import Kind, check_store
from lamina.datasets import DATASET_FILE
from lamina.io.sim import SimFS, SimulatedCrash
from lamina.plugins import Registry
from lamina.testing.kv import KV, open_kv_store

ROOT = "/db"
T0 = 1_700_000_000_000_000_000


def _schema(column: str) -> BlockSchema:
    return BlockSchema(
        columns=(
            Column("key", ColumnKind.BYTES),
            Column("ts", ColumnKind.INT64),
            Column(column, ColumnKind.INT64),
        ),
        block_key="key",
        sort_key=("key", "ts"),
        timestamp="ts",
    )


def _layout(column: str) -> FileLayout:
    return FileLayout(files=(("v.bin", ("key", column)), ("ts.bin", ("ts",))), granule_files=("ts.bin",))


def _validate(options: Mapping[str, Any]) -> dict[str, Any]:
    if set(options) != {"column"}:
        raise InvalidInputError("options", f"gauge takes exactly 'column', got {sorted(options)}")
    col = options["column"]
    if type(col) is not str or not col.isidentifier() or col in ("key", "ts"):
        raise InvalidInputError("column", f"must be an identifier other than key/ts, got {col!r}")
    return {"column": col}


def _scan(column: str, ctx: lamina.QueryContext) -> list[tuple[bytes, int, int]]:
    out = []
    for part in ctx.parts():
        for i in range(len(part.blocks.keys)):
            r = part.read_block(i)
            out += zip(r["key"], r["ts"].tolist(), r[column].tolist(), strict=True)
    return sorted(out)


def _specialize(engine: lamina.Engine, options: Mapping[str, Any]) -> lamina.Engine:
    col = options["column"]
    return attrs.evolve(
        engine,
        schema=_schema(col),
        layout=_layout(col),
        query=lambda ctx, **kw: _scan(col, ctx),
        datasets=None,
    )


GAUGE = lamina.Engine(
    name="gauge",
    api_version=lamina.API_VERSION,
    schema=_schema("value"),
    layout=_layout("value"),
    normalize=lambda batch: batch,
    query=lambda ctx, **kw: [],
    datasets=DatasetSupport(validate=_validate, specialize=_specialize),
)


def open_store(fs: SimFS, **kw: Any) -> lamina.Store:
    return lamina.Store(ROOT, fs=fs, registry=Registry(), engines=[GAUGE], background=False, **kw)


def _batch(column: str, n: int = 3, base: int = 0) -> dict[str, list[Any]]:
    return {
        "key": [b"k%d" % (i % 2) for i in range(n)],
        "ts": [T0 + base + i for i in range(n)],
        column: list(range(base, base + n)),
    }


def test_options_survive_reopen_and_shape_the_dataset() -> None:
    fs = SimFS()
    with open_store(fs) as s:
        g = s.engine("gauge")
        assert g.define("temp", column="celsius") == {"column": "celsius"}
        g.write(_batch("celsius"), dataset="temp")
        g.flush()
    with open_store(fs) as s:
        g = s.engine("gauge")
        assert g.options("temp") == {"column": "celsius"}
        assert [c.name for c in g.schema("temp").columns] == ["key", "ts", "celsius"]
        assert g.query(dataset="temp") == [(b"k0", T0, 0), (b"k0", T0 + 2, 2), (b"k1", T0 + 1, 1)]
        g.write(_batch("celsius", base=10), dataset="temp")  # still writable with the stored schema
        g.flush()
        g.merge_now()
        assert len(g.query(dataset="temp")) == 6


def test_two_datasets_of_one_engine_keep_their_own_schemas() -> None:
    fs = SimFS()
    with open_store(fs) as s:
        g = s.engine("gauge")
        g.define("a", column="x")
        g.define("b", column="y")
        g.write(_batch("x"), dataset="a")
        g.write(_batch("y", n=2), dataset="b")
        with pytest.raises(InvalidInputError) as e:
            g.write(_batch("y"), dataset="a")  # b's column in a
        assert e.value.field == "y"
    with open_store(fs) as s:
        g = s.engine("gauge")
        assert len(g.query(dataset="a")) == 3
        assert len(g.query(dataset="b")) == 2


def test_redefining_with_the_same_options_is_a_no_op_and_with_others_is_refused() -> None:
    fs = SimFS()
    with open_store(fs) as s:
        g = s.engine("gauge")
        g.define("temp", column="celsius")
        g.write(_batch("celsius"), dataset="temp")
        g.flush()
        before = fs.read_file(posixpath.join(ROOT, "gauge", "temp", DATASET_FILE))
        assert g.define("temp", column="celsius") == {"column": "celsius"}
        with pytest.raises(InvalidInputError) as e:
            g.define("temp", column="fahrenheit")
        assert e.value.field == "options"
        assert "already defined" in str(e.value)
        assert fs.read_file(posixpath.join(ROOT, "gauge", "temp", DATASET_FILE)) == before
        assert len(g.query(dataset="temp")) == 3


def test_undefined_dataset_and_bad_options_are_refused_naming_the_field() -> None:
    fs = SimFS()
    with open_store(fs) as s:
        g = s.engine("gauge")
        with pytest.raises(InvalidInputError) as e:
            g.write(_batch("value"), dataset="nope")
        assert e.value.field == "dataset"
        with pytest.raises(InvalidInputError) as e:
            g.query(dataset="nope")
        assert e.value.field == "dataset"
        with pytest.raises(InvalidInputError) as e:
            g.define("temp", column="ts")
        assert e.value.field == "column"
        with pytest.raises(InvalidInputError) as e:
            g.define("../x", column="c")
        assert e.value.field == "dataset"
        assert g.options("temp") is None
        assert not fs.exists(posixpath.join(ROOT, "gauge", "temp", DATASET_FILE))


def test_engines_without_dataset_options_refuse_define_and_behave_as_before() -> None:
    s = open_kv_store(ROOT, fs=SimFS())
    try:
        kv = s.engine("kv")
        with pytest.raises(InvalidInputError) as e:
            kv.define("default", anything=1)
        assert e.value.field == "dataset"
        assert kv.options() is None
        assert kv.schema() is KV.schema
    finally:
        s.close()


def _stored(fs: SimFS) -> None:
    with open_store(fs) as s:
        g = s.engine("gauge")
        g.define("temp", column="celsius")
        g.write(_batch("celsius"), dataset="temp")
        g.flush()


def test_damaged_options_file_stops_the_open_naming_it_and_check_reports_it() -> None:
    fs = SimFS()
    _stored(fs)
    path = posixpath.join(ROOT, "gauge", "temp", DATASET_FILE)
    data = bytearray(fs.read_file(path))
    data[data.index(b"celsius")] ^= 0x20  # "Celsius": still JSON, checksum now wrong
    fs.write_file(path, bytes(data))
    with pytest.raises(DatasetError) as e:
        open_store(fs)
    assert e.value.path == path
    assert "checksum" in str(e.value)
    report = check_store(ROOT, fs=fs, registry=_registry())
    assert [p.kind for p in report.damage] == [Kind.DATASET_OPTIONS]


def test_missing_options_file_of_a_dataset_with_parts_stops_the_open() -> None:
    fs = SimFS()
    _stored(fs)
    fs.remove(posixpath.join(ROOT, "gauge", "temp", DATASET_FILE))
    with pytest.raises(DatasetError) as e:
        open_store(fs)
    assert "never defined" in str(e.value)


def test_healthy_store_with_datasets_checks_clean() -> None:
    fs = SimFS()
    _stored(fs)
    report = check_store(ROOT, fs=fs, registry=_registry(), deep=True)
    assert report.ok, report.problems
    assert [t.dataset for t in report.tables] == ["temp"]


def _registry() -> Registry:
    r = Registry()
    r._add_engine(GAUGE, "<test>")
    return r


def _define_then_write(fs: SimFS, acked: list[str]) -> None:
    with open_store(fs) as s:
        g = s.engine("gauge")
        g.define("temp", column="celsius")
        acked.append("defined")
        g.write(_batch("celsius"), dataset="temp")
        g.flush()
        acked.append("flushed")


@pytest.mark.parametrize("mode", ["power", "process"])
def test_crash_at_every_operation_of_define_leaves_it_absent_or_whole(mode: str) -> None:
    probe = SimFS()
    _define_then_write(probe, [])
    total = probe.op_count
    assert total > 10  # mkdirs, tmp write, fsync, rename, dir fsync, then the flush's own
    for k in range(total):
        fs = SimFS()
        fs.crash_at(k)
        acked: list[str] = []
        with pytest.raises(SimulatedCrash):
            _define_then_write(fs, acked)
        after = fs.crash_state(mode)
        s = open_store(after)  # never refuses to open after a crash
        try:
            g = s.engine("gauge")
            opts = g.options("temp")
            if acked:  # define returned: the options are durable
                assert opts == {"column": "celsius"}, (k, opts)
            assert opts in (None, {"column": "celsius"}), (k, opts)
            rows = g.query(dataset="temp") if opts else []
            full = sorted(zip([b"k0", b"k1", b"k0"], [T0, T0 + 1, T0 + 2], [0, 1, 2], strict=True))
            assert rows == full if "flushed" in acked else rows in ([], full), (k, rows)
            assert rows in (
                [],
                sorted(zip([b"k0", b"k1", b"k0"], [T0, T0 + 1, T0 + 2], [0, 1, 2], strict=True)),
            )
            # SPEC §10.6: no debris of the interrupted atomic write survives the open
            tmp = [p for p in after.tree() if p.endswith(".tmp")]
            assert tmp == [], (k, tmp)
        finally:
            s.close()


def test_repair_validates_parts_with_the_datasets_own_schema() -> None:
    """A damaged newest manifest of a dataset whose schema comes from its options: repair must
    read the parts with that schema (the engine's placeholder schema would call them corrupt)."""
    from lamina.repair import repair_store

    fs = SimFS()
    _stored(fs)
    with open_store(fs) as s:
        g = s.engine("gauge")
        g.write(_batch("celsius", base=10), dataset="temp")
        g.flush()
        (table,) = g.tables("temp")
        tdir = table.path
    newest = max(n for n in fs.listdir(tdir) if n.endswith(".snp"))
    fs.corrupt(posixpath.join(tdir, newest), 4, b"#")
    with pytest.raises(lamina.CorruptManifestError):
        open_store(fs)
    (result,) = repair_store(ROOT, fs=fs, registry=_registry())
    assert len(result.live) == 2 and not result.quarantined
    with open_store(fs) as s:
        assert len(s.engine("gauge").query(dataset="temp")) == 6


def test_lamina_block_schema_still_overrides_a_datasets_schema() -> None:
    """A plugin's `lamina_block_schema` answer wins over the options-derived schema (here: a
    tiny row cut), and the data still round-trips."""
    from lamina.hookspecs import hookimpl

    class TinyBlocks:
        @hookimpl
        def lamina_block_schema(self, engine: lamina.Engine, dataset: str) -> BlockSchema | None:
            return attrs.evolve(engine.schema, block_max_rows=2) if dataset == "temp" else None

    reg = _registry()
    reg.register_plugin(TinyBlocks(), "tiny-blocks")
    with lamina.Store(ROOT, fs=SimFS(), registry=reg, background=False) as s:
        g = s.engine("gauge")
        g.define("temp", column="celsius")
        g.define("other", column="celsius")
        assert g.schema("temp").block_max_rows == 2
        assert [c.name for c in g.schema("temp").columns] == ["key", "ts", "celsius"]
        assert g.schema("other").block_max_rows == 0
        g.write(_batch("celsius", n=8), dataset="temp")
        g.flush()
        (table,) = g.tables("temp")
        (part,) = table.live_parts
        assert len(part.reader.blocks.keys) == 4  # 2 keys x 4 rows, cut every 2 rows
        assert len(g.query(dataset="temp")) == 8
