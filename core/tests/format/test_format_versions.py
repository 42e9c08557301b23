"""Format versions: what this Lamina writes is version 2; parts and manifests written as version 1
(before column ranges, tag filters and string-array tags) still open and read the same."""

from __future__ import annotations

import posixpath

import attrs

from lamina import names
from lamina.format.part_meta import FORMAT_VERSION, SUPPORTED_VERSIONS, Manifest, PartMeta
from lamina.format.records import dump_record, load_record
from lamina.io.sim import SimFS
from lamina.testing import damage
from lamina.testing.kv import kv_batch, open_kv_store

T0 = 1_700_000_000_000_000_000


def test_this_lamina_writes_version_2_and_reads_1_and_2() -> None:
    assert FORMAT_VERSION == 2
    assert SUPPORTED_VERSIONS == (1, 2)


def test_a_version_1_part_and_manifest_still_open_and_read_the_same() -> None:
    fs = SimFS()
    store = open_kv_store("/db", fs=fs)
    kv = store.engine("kv")
    kv.write(kv_batch([b"a", b"b", b"c"], [T0, T0 + 1, T0 + 2]))
    kv.flush()
    before = kv.query()
    (table,) = kv.tables()
    store.close()
    # rewrite every record of the table as a version-1 writer would have written it
    for name in fs.listdir(table.path):
        path = posixpath.join(table.path, name)
        if names.parse_manifest_name(name) is not None:
            m = load_record(fs.read_file(path), Manifest, SUPPORTED_VERSIONS)
            assert m.format_version == 2
            damage.write_file(fs, path, dump_record(attrs.evolve(m, format_version=1)))
        elif fs.is_dir(path) and name != names.CORRUPT_DIR:
            meta_path = posixpath.join(path, names.METADATA)
            meta = load_record(fs.read_file(meta_path), PartMeta, SUPPORTED_VERSIONS)
            assert meta.format_version == 2
            damage.write_file(fs, meta_path, dump_record(attrs.evolve(meta, format_version=1)))
    store = open_kv_store("/db", fs=fs)
    try:
        assert store.engine("kv").query() == before
        assert store.metrics.value("lamina_corrupt_parts_total") == 0
    finally:
        store.close()
