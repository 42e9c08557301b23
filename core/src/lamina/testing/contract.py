"""The corruption contract: every engine's test suite subclasses `CorruptionContract` and inherits
the tests that a torn or corrupt part never panics, never crash-loops and never takes good data with
it (SPEC §6, §7, §10).

An engine suite provides three fixtures::

    class TestMyEngineCorruption(CorruptionContract):
        @pytest.fixture
        def engine(self):            # the lamina.Engine under test
            return ENGINE

        @pytest.fixture
        def sample_batches(self):    # >= 3 columnar batches, each one part of >= 3 blocks (~30+
            return [...]             # block keys), all in one time segment

        @pytest.fixture
        def query_all(self):         # handle -> every row, hashable, sorted
            return lambda handle: sorted(row_of(r) for r in handle.query())

and may override `fs` (default: a fresh `SimFS`; an `OSFileSystem` works too, the store then lives
under `tmp_path`).

Each test writes the batches (one flushed part each), damages one part (by default the middle
one) through `lamina.testing.damage`, and checks the invariants against a ledger of the rows
written, never merely "no exception": the store opens, the damaged part is quarantined exactly once
with the expected reason (never deleted), every row of the healthy parts is returned and no row that
was never written, a merge afterwards succeeds, and a reopen does not quarantine again. The ledger
is computed by writing the same batches into a reference store, so engines whose equal-key rule
drops or combines rows are compared correctly.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import attrs
import pytest
from loguru import logger

import lamina
from lamina import names
from lamina.format.part_meta import SUPPORTED_VERSIONS, QuarantineReason
from lamina.format.records import load_record
from lamina.hookspecs import hookimpl
from lamina.io.fs import FileSystem
from lamina.plugins import Registry
from lamina.testing import damage as dmg
from lamina.testing._base import ContractFixtures
from lamina.testing.ledger import Ledger

__all__ = [
    "DAMAGES",
    "Applied",
    "CorruptionContract",
    "CorruptionLab",
    "Damage",
    "MergeEverything",
]

CORRUPT_METRIC = "lamina_corrupt_parts_total"
FRAME_REASONS = frozenset({"short_read", "offset_mismatch", "checksum"})


# -- observers and policies plugged into every store the contract opens ---------------------------
class _QuarantineRecorder:
    """Collects `lamina_part_quarantined` broadcasts (what an alerting plugin would see)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @hookimpl
    def lamina_part_quarantined(self, engine: str, table: str, part: str, reason: dict[str, Any]) -> None:
        self.events.append({"engine": engine, "table": table, "part": part, "reason": reason})


class MergeEverything:
    """A `lamina_merge_policy` override: merge all parts of a table whenever there are two or more
    (the default size-tiered policy rightly waits for more parts than a test writes)."""

    @hookimpl
    def lamina_merge_policy(self, engine: Any, parts: list[Any]) -> list[int]:
        return sorted(p.part_id for p in parts) if len(parts) >= 2 else []


# -- the lab: a store with one part per sample batch, and its ledger ------------------------------
class CorruptionLab:
    """Builds the store under test, opens it, and knows which rows each part holds."""

    def __init__(
        self,
        fs: FileSystem,
        root: str,
        engine: lamina.Engine,
        batches: Sequence[Any],
        query_all: Callable[[lamina.EngineHandle], list[Any]],
    ) -> None:
        self.fs, self.root, self.engine, self.batches, self.query_all = fs, root, engine, batches, query_all
        self.parts: list[str] = []  # part name of batch i
        self.table = ""
        self.recorder = _QuarantineRecorder()
        self._stores: list[lamina.Store] = []
        self.ledger = Ledger(engine, batches, query_all)

    # -- stores --------------------------------------------------------------------------------
    def open(self, *, background: bool = False, plugins: Iterable[object] = (), **kw: Any) -> lamina.Store:
        registry = Registry()
        registry.register_plugin(self.recorder, "contract-recorder")
        for i, p in enumerate(plugins):
            registry.register_plugin(p, f"contract-plugin-{i}")
        store = lamina.Store(
            self.root, fs=self.fs, registry=registry, engines=[self.engine], background=background, **kw
        )
        self._stores.append(store)
        return store

    def handle(self, store: lamina.Store) -> lamina.EngineHandle:
        return store.engine(self.engine.name)

    def close_all(self) -> None:
        for s in self._stores:
            with contextlib.suppress(Exception):  # teardown of a test that already failed
                s.close()

    def build(self) -> CorruptionLab:
        if len(self.batches) < 3:
            raise ValueError(f"sample_batches must hold at least 3 batches, got {len(self.batches)}")
        store = self.open()
        h = self.handle(store)
        for i, b in enumerate(self.batches):
            h.write(b)
            ids = h.flush()
            if len(ids) != 1:
                raise ValueError(f"sample batch {i} made {len(ids)} parts; each must fit one time segment")
            self.parts.append(names.part_name(ids[0]))
        tables = h.tables()
        if len(tables) != 1:
            raise ValueError(f"sample batches span {len(tables)} tables; they must share one time segment")
        self.table = tables[0].path
        for t in tables:
            for ph in t.live_parts:
                nblocks = len(ph.reader.blocks.keys)
                if nblocks < 3:
                    raise ValueError(f"part {ph.name} has {nblocks} blocks; sample batches must make 3+")
        got = self.query_all(h)
        store.close()
        assert sorted(got) == self.expected(), "query_all before any damage disagrees with the ledger"
        return self

    # -- the ledger ----------------------------------------------------------------------------
    def expected(self, without: Iterable[int | str] = ()) -> list[Any]:
        """Rows a store holding every sample batch except `without` (batch indices or part names)
        returns: computed by writing those batches, one flush each, into a reference store."""
        skip = {self.parts.index(w) if isinstance(w, str) else w for w in without}
        return self.ledger.expected(set(range(len(self.batches))) - skip)

    def healthy(self, victim: str) -> list[Any]:
        """The rows every part but `victim` holds (all rows if `victim` holds none of the batches)."""
        return self.expected([victim] if victim in self.parts else [])

    # -- paths ---------------------------------------------------------------------------------
    @property
    def victim(self) -> str:
        return self.parts[len(self.parts) // 2]

    def part_dir(self, part: str) -> str:
        return posixpath.join(self.table, part)

    def path(self, part: str, fname: str) -> str:
        return posixpath.join(self.table, part, fname)

    def corrupt_dir(self) -> str:
        return posixpath.join(self.table, names.CORRUPT_DIR)

    def quarantined(self) -> list[str]:
        c = self.corrupt_dir()
        return self.fs.listdir(c) if self.fs.is_dir(c) else []

    def reason(self, part: str) -> QuarantineReason:
        data = self.fs.read_file(posixpath.join(self.corrupt_dir(), part, names.REASON))
        return load_record(data, QuarantineReason, SUPPORTED_VERSIONS)

    def main_block_file(self, part: str) -> str:
        """The largest block-mode data file of `part` (trace: spans.bin)."""
        meta = dmg.read_part_meta(self.fs, self.part_dir(part))
        if not meta.block_streams:
            pytest.skip(f"engine {self.engine.name} stores no data file per block")
        return max(meta.block_streams, key=lambda f: (meta.files[f], f))


# -- damage catalogue -----------------------------------------------------------------------------
@attrs.frozen
class Applied:
    """What a damage did: the part it hit, the file, and what reason.json should then say."""

    part: str
    file: str
    #: Offset the error must name: -1 for whole-file findings, a frame offset for frame findings,
    #: None when it is not pinned down.
    offset: int | None = None
    expected: int | None = None  # size_mismatch: recorded size
    actual: int | None = None  # size_mismatch: size on disk


@attrs.frozen
class Damage:
    name: str
    apply: Callable[[CorruptionLab], Applied]
    #: Where it is caught: "open" (recovery) or "merge" (the strict reader, lazily).
    stage: str
    reasons: frozenset[str]


def _size(lab: CorruptionLab, part: str, fname: str) -> int:
    return lab.fs.file_size(lab.path(part, fname))


def _truncate_at_boundary(drop: int, forge: bool) -> Callable[[CorruptionLab], Applied]:
    def apply(lab: CorruptionLab) -> Applied:
        part = lab.victim
        f = lab.main_block_file(part)
        before = _size(lab, part, f)
        cut = dmg.truncate_blocks(lab.fs, lab.part_dir(part), f, drop, forge=forge)
        return Applied(part, f, cut if forge else -1, None if forge else before, None if forge else cut)

    return apply


def _truncate_inside(forge: bool) -> Callable[[CorruptionLab], Applied]:
    def apply(lab: CorruptionLab) -> Applied:
        part = lab.victim
        f = lab.main_block_file(part)
        frames = dmg.block_frames(lab.fs, lab.part_dir(part), f)
        before = _size(lab, part, f)
        cut = dmg.truncate_inside_block(lab.fs, lab.part_dir(part), f, forge=forge)
        hit = next(fr for fr in frames if fr.offset <= cut < fr.end)
        return Applied(
            part, f, hit.offset if forge else -1, None if forge else before, None if forge else cut
        )

    return apply


def _zero_length(forge: bool) -> Callable[[CorruptionLab], Applied]:
    def apply(lab: CorruptionLab) -> Applied:
        part = lab.victim
        f = lab.main_block_file(part)
        before = _size(lab, part, f)
        dmg.zero_length(lab.fs, lab.path(part, f))
        if forge:
            dmg.forge_sizes(lab.fs, lab.part_dir(part), [f])
        return Applied(part, f, 0 if forge else -1, None if forge else before, None if forge else 0)

    return apply


def _stale_last_block(lab: CorruptionLab) -> Applied:
    part = lab.victim
    f = lab.main_block_file(part)
    frame = dmg.stale_last_block(lab.fs, lab.part_dir(part), f)
    return Applied(part, f, frame.offset)


def _flip_data_block(lab: CorruptionLab) -> Applied:
    part = lab.victim
    f = lab.main_block_file(part)
    frames = dmg.block_frames(lab.fs, lab.part_dir(part), f)
    fr = frames[len(frames) // 2]
    dmg.flip_bit(lab.fs, lab.path(part, f), fr.offset + fr.size // 2, 3)
    return Applied(part, f, fr.offset)


def _flip_primary(lab: CorruptionLab) -> Applied:
    part = lab.victim
    fr = dmg.granule_frames(lab.fs, lab.part_dir(part))[0]
    dmg.flip_bit(lab.fs, lab.path(part, names.PRIMARY), fr.offset + fr.size // 2, 5)
    return Applied(part, names.PRIMARY, fr.offset)


def _flip_granule_stream(tags: bool) -> Callable[[CorruptionLab], Applied]:
    def apply(lab: CorruptionLab) -> Applied:
        part = lab.victim
        meta = dmg.read_part_meta(lab.fs, lab.part_dir(part))
        ndata = len(meta.granule_streams) - len(meta.tags)
        streams = meta.granule_streams[ndata:] if tags else meta.granule_streams[:ndata]
        if not streams:
            pytest.skip(
                f"parts of engine {lab.engine.name} have no {'tag' if tags else 'granule-mode'} files"
            )
        f = streams[0]
        fr = dmg.granule_stream_frames(lab.fs, lab.part_dir(part), f)[0]
        dmg.flip_bit(lab.fs, lab.path(part, f), fr.offset + fr.size // 2, 1)
        return Applied(part, f, fr.offset)

    return apply


def _flip_meta_bin(lab: CorruptionLab) -> Applied:
    part = lab.victim
    dmg.flip_bit(lab.fs, lab.path(part, names.META_INDEX), _size(lab, part, names.META_INDEX) // 2, 2)
    return Applied(part, names.META_INDEX, -1)


def _flip_metadata_json(lab: CorruptionLab) -> Applied:
    part = lab.victim
    path = lab.path(part, names.METADATA)
    data = lab.fs.read_file(path)
    at = data.index(b'"rows"')
    at = data.index(b":", at) + 2  # first digit of the row count: never the format version
    dmg.flip_bit(lab.fs, path, at, 0)
    return Applied(part, names.METADATA, -1)


def _missing_tag_file(lab: CorruptionLab) -> Applied:
    part = lab.victim
    meta = dmg.read_part_meta(lab.fs, lab.part_dir(part))
    if not meta.tags:
        pytest.skip(f"parts of engine {lab.engine.name} have no tags")
    f = names.tag_data_file(sorted(meta.tags)[0])
    dmg.delete_file(lab.fs, lab.path(part, f))
    return Applied(part, f, -1)


def _deleted_data_file(lab: CorruptionLab) -> Applied:
    part = lab.victim
    f = lab.main_block_file(part)
    dmg.delete_file(lab.fs, lab.path(part, f))
    return Applied(part, f, -1)


def _no_metadata(lab: CorruptionLab) -> Applied:
    f = lab.main_block_file(lab.victim)
    part = dmg.add_listed_part_without_metadata(lab.fs, lab.table, {f: b"\x00" * 64, names.PRIMARY: b"?"})
    return Applied(part, names.METADATA, -1)


def _format_version(lab: CorruptionLab) -> Applied:
    part = lab.victim
    dmg.set_format_version(lab.fs, lab.part_dir(part), 99)
    return Applied(part, names.METADATA, -1)


def _flip_sidecar(kind: str) -> Callable[[CorruptionLab], Applied]:
    """One bit of a small whole-file-checksummed sidecar: a tag dictionary (`<tag>.tm`), the key
    filter, the per-block tag filters (`tags.tff`), or the tag type list."""

    def apply(lab: CorruptionLab) -> Applied:
        part = lab.victim
        meta = dmg.read_part_meta(lab.fs, lab.part_dir(part))
        if kind == "tag-dictionary":
            f = names.tag_meta_file(sorted(meta.tags)[0]) if meta.tags else None
        elif kind == "key-filter":
            f = lab.engine.layout.key_filter
        elif kind == "tag-filters":
            f = names.TAG_FILTERS if lab.engine.layout.tag_filters else None
        else:
            f = lab.engine.layout.tag_types if meta.tags else None
        if f is None or f not in meta.files:
            pytest.skip(f"parts of engine {lab.engine.name} have no {kind} file")
        dmg.flip_bit(lab.fs, lab.path(part, f), _size(lab, part, f) // 2, 4)
        return Applied(part, f, -1)

    return apply


def _forged_row_count(lab: CorruptionLab) -> Applied:
    """metadata.json with a valid body checksum but one row too many: meta.bin disagrees."""
    part = lab.victim
    meta = dmg.read_part_meta(lab.fs, lab.part_dir(part))
    dmg.write_part_meta(lab.fs, lab.part_dir(part), attrs.evolve(meta, rows=meta.rows + 1))
    return Applied(part, names.META_INDEX, -1)


def _metadata_of_another_part(lab: CorruptionLab) -> Applied:
    """A valid commit record, but another part's (a botched manual restore)."""
    part, other = lab.victim, lab.parts[0]
    data = lab.fs.read_file(lab.path(other, names.METADATA))
    dmg.delete_file(lab.fs, lab.path(part, names.METADATA))
    dmg.write_file(lab.fs, lab.path(part, names.METADATA), data)
    return Applied(part, names.METADATA, -1)


_SIZE = frozenset({"size_mismatch"})
_CHECKSUM = frozenset({"checksum"})
_METADATA = frozenset({"metadata"})

DAMAGES: tuple[Damage, ...] = (
    Damage("truncated-at-block-boundary", _truncate_at_boundary(2, False), "open", _SIZE),
    Damage("truncated-at-block-boundary-forged", _truncate_at_boundary(2, True), "merge", FRAME_REASONS),
    Damage("truncated-inside-block", _truncate_inside(False), "open", _SIZE),
    Damage("truncated-inside-block-forged", _truncate_inside(True), "merge", FRAME_REASONS),
    Damage("last-block-missing", _truncate_at_boundary(1, False), "open", _SIZE),
    Damage("last-block-missing-forged", _truncate_at_boundary(1, True), "merge", FRAME_REASONS),
    Damage("last-block-stale-bytes", _stale_last_block, "merge", _CHECKSUM),
    Damage("bitflip-data-block", _flip_data_block, "merge", _CHECKSUM),
    Damage("bitflip-primary-granule", _flip_primary, "merge", _CHECKSUM),
    Damage("bitflip-granule-data-file", _flip_granule_stream(False), "merge", _CHECKSUM),
    Damage("bitflip-tag-file", _flip_granule_stream(True), "merge", _CHECKSUM),
    Damage("bitflip-meta-bin", _flip_meta_bin, "open", _CHECKSUM),
    Damage("bitflip-metadata-json", _flip_metadata_json, "open", _METADATA),
    Damage("bitflip-tag-dictionary", _flip_sidecar("tag-dictionary"), "open", _CHECKSUM),
    Damage("bitflip-key-filter", _flip_sidecar("key-filter"), "open", _CHECKSUM),
    Damage("forged-row-count", _forged_row_count, "open", _METADATA),
    Damage("metadata-of-another-part", _metadata_of_another_part, "open", _METADATA),
    Damage("missing-tag-file", _missing_tag_file, "open", frozenset({"missing_file"})),
    Damage("deleted-data-file", _deleted_data_file, "open", frozenset({"missing_file"})),
    Damage("listed-part-without-metadata", _no_metadata, "open", frozenset({"missing_file"})),
    Damage("unknown-format-version", _format_version, "open", frozenset({"format_version"})),
    Damage("zero-length-data-file", _zero_length(False), "open", _SIZE),
    Damage("zero-length-data-file-forged", _zero_length(True), "merge", FRAME_REASONS),
    Damage("bitflip-tag-types", _flip_sidecar("tag-types"), "open", _CHECKSUM),
    Damage("bitflip-tag-filters", _flip_sidecar("tag-filters"), "open", _CHECKSUM),
)
_BY_NAME = {d.name: d for d in DAMAGES}


# -- the contract ---------------------------------------------------------------------------------
class CorruptionContract(ContractFixtures):
    """Subclass as `Test<Engine>Corruption` and override `engine`, `sample_batches`, `query_all`."""

    # -- fixtures of the contract itself (the engine's own come from ContractFixtures) ------------
    @pytest.fixture
    def lab(
        self,
        fs: FileSystem,
        store_root: str,
        engine: lamina.Engine,
        sample_batches: list[Any],
        query_all: Callable[[lamina.EngineHandle], list[Any]],
    ) -> Iterator[CorruptionLab]:
        lab = CorruptionLab(fs, store_root, engine, sample_batches, query_all)
        try:
            yield lab.build()
        finally:
            lab.close_all()

    @pytest.fixture
    def error_log(self) -> Iterator[list[dict[str, Any]]]:
        """ERROR (and worse) records Lamina logs during the test."""
        records: list[dict[str, Any]] = []
        logger.enable("lamina")
        sink_id = logger.add(lambda m: records.append(m.record), level="ERROR")
        try:
            yield records
        finally:
            logger.remove(sink_id)
            logger.disable("lamina")  # the library default

    # -- checks --------------------------------------------------------------------------------
    @staticmethod
    def rows(lab: CorruptionLab, store: lamina.Store) -> list[Any]:
        """All rows, checked to be a sub-multiset of the rows ever written (no invented row).

        "Written" is what a store shows with every batch, or with any one batch missing: under
        an equal-key rule that drops rows (highest version wins), losing the part that held the
        newer version legitimately brings an older one back."""
        got = sorted(lab.query_all(lab.handle(store)))
        written = Counter(lab.expected())
        for i in range(len(lab.batches)):
            written |= Counter(lab.expected([i]))
        extra = Counter(got) - written
        assert not extra, f"rows that were never written were returned: {sorted(extra)[:5]}"
        return got

    @staticmethod
    def live(lab: CorruptionLab, store: lamina.Store) -> list[str]:
        return sorted(h.name for t in lab.handle(store).tables() for h in t.live_parts)

    @staticmethod
    def assert_table_clean(lab: CorruptionLab) -> None:
        """SPEC §10.6: only listed parts, the latest manifests and corrupt/ remain."""
        listed = set(dmg.listed_parts(lab.fs, lab.table))
        entries = lab.fs.listdir(lab.table)
        strays = [
            n
            for n in entries
            if n not in listed and n != names.CORRUPT_DIR and names.parse_manifest_name(n) is None
        ]
        assert strays == [], f"unlisted entries left in {lab.table}"
        assert all(lab.fs.is_dir(lab.part_dir(p)) for p in listed), "a listed part is missing"
        assert sum(names.parse_manifest_name(n) is not None for n in entries) <= 2

    @staticmethod
    def assert_live_parts_validate(lab: CorruptionLab, store: lamina.Store) -> None:
        """SPEC §10.2: every visible part reads back completely (every frame checksummed)."""
        for t in lab.handle(store).tables():
            for h in t.live_parts:
                assert h.reader.verify_all() > 0

    def assert_quarantined(
        self,
        lab: CorruptionLab,
        store: lamina.Store,
        applied: Applied,
        *,
        stage: str,
        reasons: frozenset[str],
        error_log: list[dict[str, Any]] | None = None,
    ) -> QuarantineReason:
        part = applied.part
        assert part not in self.live(lab, store), f"damaged part {part} is still served"
        assert part not in dmg.listed_parts(lab.fs, lab.table), f"damaged part {part} is still listed"
        assert not lab.fs.exists(lab.part_dir(part))
        assert lab.quarantined() == [part], "exactly the damaged part is in corrupt/"
        assert lab.handle(store).stats().quarantined == 1
        kept = [n for n in lab.fs.listdir(posixpath.join(lab.corrupt_dir(), part)) if n != names.REASON]
        assert kept, f"quarantined part {part} lost its files (quarantine must never delete)"
        r = lab.reason(part)
        assert r.engine == lab.engine.name
        assert r.part == part
        assert r.stage == stage, f"caught at {r.stage}, expected {stage}: {r}"
        assert r.reason in reasons, f"reason {r.reason} not in {sorted(reasons)}: {r}"
        assert r.file == applied.file, r
        if applied.offset is not None:
            assert r.offset == applied.offset, r
        if r.reason == "size_mismatch" and applied.expected is not None:
            assert (r.expected, r.actual) == (str(applied.expected), str(applied.actual)), r
        assert r.table == lab.table and r.dataset == "default"
        assert datetime.fromisoformat(r.time).tzinfo is not None
        assert r.lamina_version == lamina.__version__
        m = store.metrics
        assert m.value(CORRUPT_METRIC) == 1
        assert m.value(CORRUPT_METRIC, engine=lab.engine.name, stage=stage, reason=r.reason) == 1
        events = [e for e in lab.recorder.events if e["part"] == part]
        assert len(events) == 1 and events[0]["reason"]["reason"] == r.reason
        if error_log is not None:
            lines = [
                rec
                for rec in error_log
                if rec["extra"].get("part") == part and "quarantined" in rec["message"]
            ]
            assert len(lines) == 1, f"expected one ERROR line naming {part}, got {len(lines)}"
            assert lines[0]["level"].name == "ERROR"
            assert r.reason in lines[0]["message"] and lab.table in lines[0]["message"]
        return r

    def assert_reopen_is_quiet(self, lab: CorruptionLab, applied: Applied, healthy: list[Any]) -> None:
        """A second open quarantines nothing more and serves the same rows; merging again is fine."""
        store = lab.open()
        assert store.metrics.value(CORRUPT_METRIC) == 0
        assert lab.quarantined() == [applied.part]
        assert self.rows(lab, store) == healthy
        lab.handle(store).merge_now()
        assert self.rows(lab, store) == healthy
        assert store.metrics.value(CORRUPT_METRIC) == 0
        self.assert_table_clean(lab)
        store.close()

    # -- every damage ------------------------------------------------------------------------------
    @pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.name)
    def test_damaged_part_is_quarantined_and_healthy_rows_survive(
        self, lab: CorruptionLab, damage: Damage, error_log: list[dict[str, Any]]
    ) -> None:
        applied = damage.apply(lab)
        healthy = lab.healthy(applied.part)
        others = [p for p in lab.parts if p != applied.part]
        store = lab.open()  # never raises
        if damage.stage == "open":
            self.assert_quarantined(lab, store, applied, stage="open", reasons=damage.reasons)
            self.assert_table_clean(lab)
        else:  # the cheap checks on open cannot see it: it must still be listed, not yet quarantined
            assert applied.part in self.live(lab, store)
            assert store.metrics.value(CORRUPT_METRIC) == 0
        merges = lab.handle(store).merge_now()
        assert merges == 1, "the healthy parts merge into one"
        r = self.assert_quarantined(
            lab, store, applied, stage=damage.stage, reasons=damage.reasons, error_log=error_log
        )
        live = self.live(lab, store)
        assert len(live) == 1 and live[0] not in lab.parts
        lineage = dmg.read_part_meta(lab.fs, lab.part_dir(live[0])).lineage
        assert sorted(names.part_name(p) for p in lineage) == others
        assert self.rows(lab, store) == healthy
        self.assert_live_parts_validate(lab, store)
        self.assert_table_clean(lab)
        store.close()
        assert r.reason in damage.reasons
        self.assert_reopen_is_quiet(lab, applied, healthy)

    def test_two_damaged_parts_are_each_quarantined_once(self, lab: CorruptionLab) -> None:
        """One part caught on open, another only by the merge: both set aside, each once."""
        first, last = lab.parts[0], lab.parts[-1]
        f = lab.main_block_file(first)
        dmg.truncate_blocks(lab.fs, lab.part_dir(first), f, drop=1, forge=True)
        dmg.flip_bit(lab.fs, lab.path(last, names.META_INDEX), 3)
        healthy = lab.expected([first, last])
        store = lab.open()
        assert lab.quarantined() == [last]
        lab.handle(store).merge_now()
        assert lab.quarantined() == sorted([first, last])
        assert (lab.reason(first).stage, lab.reason(last).stage) == ("merge", "open")
        assert store.metrics.value(CORRUPT_METRIC) == 2
        assert self.live(lab, store) == [lab.parts[1]]
        assert self.rows(lab, store) == healthy
        store.close()
        for _ in range(3):
            store = lab.open()
            lab.handle(store).merge_now()
            assert store.metrics.value(CORRUPT_METRIC) == 0
            assert self.rows(lab, store) == healthy
            store.close()
        self.assert_table_clean(lab)

    # -- the reported case -------------------------------------------------------------------------
    def test_reported_case_block_file_torn_at_block_boundary(
        self, lab: CorruptionLab, error_log: list[dict[str, Any]]
    ) -> None:
        """A multi-block part whose block-mode data file lost its last blocks exactly at a block
        boundary (so every remaining frame is intact), metadata.json and the index untouched."""
        victim = lab.victim
        f = lab.main_block_file(victim)
        frames = dmg.block_frames(lab.fs, lab.part_dir(victim), f)
        assert len(frames) >= 3
        before = _size(lab, victim, f)
        cut = dmg.truncate_blocks(lab.fs, lab.part_dir(victim), f, drop=2)
        assert cut == frames[-2].offset and _size(lab, victim, f) == cut
        healthy = lab.healthy(victim)
        assert healthy and len(healthy) < len(lab.expected())

        store = lab.open()
        applied = Applied(victim, f, -1, before, cut)
        r = self.assert_quarantined(lab, store, applied, stage="open", reasons=_SIZE, error_log=error_log)
        assert (r.expected, r.actual) == (str(before), str(cut))
        assert lab.handle(store).merge_now() == 1
        assert len(self.live(lab, store)) == 1
        assert self.rows(lab, store) == healthy
        assert store.metrics.value(CORRUPT_METRIC) == 1
        raw = json.loads(lab.fs.read_file(posixpath.join(lab.corrupt_dir(), victim, names.REASON)))
        for key in ("engine", "part", "stage", "reason", "file", "offset", "expected", "actual", "time"):
            assert key in raw
        assert raw["lamina_version"] == lamina.__version__
        assert _size(lab, posixpath.join(names.CORRUPT_DIR, victim), f) == cut  # kept as found
        store.close()
        self.assert_reopen_is_quiet(lab, applied, healthy)

    def test_reported_case_with_forged_sizes_is_caught_by_the_strict_reader(
        self, lab: CorruptionLab, error_log: list[dict[str, Any]]
    ) -> None:
        """Same tear, but metadata.json forged to the truncated size: only frame bounds and
        checksums can catch it. Still quarantined; never a wrong row, before or after."""
        victim = lab.victim
        f = lab.main_block_file(victim)
        cut = dmg.truncate_blocks(lab.fs, lab.part_dir(victim), f, drop=2, forge=True)
        healthy = lab.healthy(victim)
        store = lab.open()
        assert victim in self.live(lab, store) and store.metrics.value(CORRUPT_METRIC) == 0
        assert lab.handle(store).merge_now() == 1
        r = self.assert_quarantined(
            lab, store, Applied(victim, f, cut), stage="merge", reasons=FRAME_REASONS, error_log=error_log
        )
        assert r.offset == cut
        assert self.rows(lab, store) == healthy
        store.close()

    # -- detection stages --------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "damage",
        [_BY_NAME["truncated-inside-block-forged"], _BY_NAME["bitflip-data-block"]],
        ids=lambda d: d.name,
    )
    def test_merge_time_damage_removes_partial_output_and_merges_the_rest(
        self, lab: CorruptionLab, damage: Damage
    ) -> None:
        applied = damage.apply(lab)
        healthy = lab.healthy(applied.part)
        store = lab.open()
        h = lab.handle(store)
        assert sorted(self.live(lab, store)) == sorted(lab.parts)
        table = h.tables()[0]
        # one merge attempt of everything: it meets the damage, abandons its output, quarantines
        assert table.merge([names.parse_part_name(p) for p in lab.parts]) is None  # type: ignore[misc]
        self.assert_quarantined(lab, store, applied, stage="merge", reasons=damage.reasons)
        assert sorted(self.live(lab, store)) == sorted(p for p in lab.parts if p != applied.part)
        assert dmg.part_dirs(lab.fs, lab.table) == sorted(self.live(lab, store)), "partial output left"
        assert store.metrics.value("lamina_merges_total") == 0
        assert self.rows(lab, store) == healthy
        assert h.merge_now() == 1
        assert len(self.live(lab, store)) == 1
        assert dmg.part_dirs(lab.fs, lab.table) == self.live(lab, store)
        assert self.rows(lab, store) == healthy
        self.assert_live_parts_validate(lab, store)
        store.close()
        self.assert_reopen_is_quiet(lab, applied, healthy)

    @pytest.mark.parametrize(
        "damage",
        [_BY_NAME["bitflip-data-block"], _BY_NAME["truncated-at-block-boundary-forged"]],
        ids=lambda d: d.name,
    )
    def test_query_time_damage_raises_naming_the_part_then_serves_healthy_rows(
        self, lab: CorruptionLab, damage: Damage, error_log: list[dict[str, Any]]
    ) -> None:
        applied = damage.apply(lab)
        healthy = lab.healthy(applied.part)
        store = lab.open()
        assert applied.part in self.live(lab, store)
        with pytest.raises(lamina.CorruptPartError) as exc:
            lab.query_all(lab.handle(store))
        assert exc.value.part == applied.part and applied.part in str(exc.value)
        assert exc.value.file == applied.file
        self.assert_quarantined(
            lab,
            store,
            Applied(applied.part, applied.file),  # a query may meet any damaged frame first
            stage="query",
            reasons=damage.reasons,
            error_log=error_log,
        )
        assert self.rows(lab, store) == healthy  # re-running the query
        assert self.rows(lab, store) == healthy
        assert lab.handle(store).merge_now() == 1
        assert self.rows(lab, store) == healthy
        assert store.metrics.value(CORRUPT_METRIC) == 1
        store.close()
        self.assert_reopen_is_quiet(lab, applied, healthy)

    # -- no crash loop -----------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "damage",
        [_BY_NAME["truncated-at-block-boundary"], _BY_NAME["last-block-missing-forged"]],
        ids=lambda d: d.name,
    )
    def test_restart_loop_quarantines_once(self, lab: CorruptionLab, damage: Damage) -> None:
        applied = damage.apply(lab)
        healthy = lab.healthy(applied.part)
        counts, quarantines = [], 0.0
        for _ in range(20):
            store = lab.open()
            h = lab.handle(store)
            h.merge_now()
            counts.append(len(self.rows(lab, store)))
            quarantines += store.metrics.value(CORRUPT_METRIC)
            store.close()
        assert quarantines == 1
        assert counts == [len(healthy)] * 20
        assert lab.quarantined() == [applied.part]
        assert lab.reason(applied.part).stage == damage.stage
        self.assert_table_clean(lab)

    def test_background_merge_loop_survives_a_damaged_part(
        self, lab: CorruptionLab, error_log: list[dict[str, Any]]
    ) -> None:
        applied = _BY_NAME["truncated-at-block-boundary-forged"].apply(lab)
        healthy = lab.healthy(applied.part)
        store = lab.open(background=True, merge_interval_s=0.05, plugins=[MergeEverything()])
        thread = store._thread
        assert thread is not None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if store.metrics.value(CORRUPT_METRIC) >= 1 and len(self.live(lab, store)) == 1:
                break
            time.sleep(0.02)
        assert thread.is_alive()
        assert store.metrics.value(CORRUPT_METRIC) == 1
        assert store.metrics.value(CORRUPT_METRIC, stage="merge") == 1
        assert lab.quarantined() == [applied.part]
        live = self.live(lab, store)
        assert len(live) == 1 and live[0] not in lab.parts, "the healthy parts were merged"
        assert self.rows(lab, store) == healthy
        failed = [rec["message"] for rec in error_log if rec["message"].startswith("background ")]
        assert failed == [], "the damaged part escaped the merge as an exception"
        store.close()
        assert not thread.is_alive()
        self.assert_table_clean(lab)

    # -- leftovers ---------------------------------------------------------------------------------
    def test_leftover_metadata_tmp_in_a_listed_part_never_breaks_open(self, lab: CorruptionLab) -> None:
        """A `metadata.json.tmp` inside a listed part: the store opens, merges and serves no wrong row.
        (Either outcome is safe: the leftover removed, or the part set aside as unknown_file.)"""
        victim = lab.victim
        tmp = dmg.leave_metadata_tmp(lab.fs, lab.part_dir(victim))
        store = lab.open()
        if lab.quarantined():
            r = lab.reason(victim)
            assert (r.reason, r.file, r.stage) == ("unknown_file", posixpath.basename(tmp), "open")
            expected = lab.healthy(victim)
        else:
            assert not lab.fs.exists(tmp)
            expected = lab.expected()
        assert self.rows(lab, store) == expected
        assert lab.handle(store).merge_now() == 1
        assert self.rows(lab, store) == expected
        store.close()
        store = lab.open()
        assert store.metrics.value(CORRUPT_METRIC) == 0
        assert self.rows(lab, store) == expected
        store.close()
        self.assert_table_clean(lab)

    def test_leftover_metadata_tmp_in_a_listed_part_is_removed(self, lab: CorruptionLab) -> None:
        victim = lab.victim
        tmp = dmg.leave_metadata_tmp(lab.fs, lab.part_dir(victim))
        store = lab.open()
        assert lab.quarantined() == []
        assert store.metrics.value(CORRUPT_METRIC) == 0
        assert not lab.fs.exists(tmp)
        assert self.rows(lab, store) == lab.expected()
        store.close()
