"""K-way merge of parts into one, through the same writer and commit protocol as a flush.

Blocks are visited in key order across all inputs (one stable sort of every input's block keys).
A key present in one input only is copied: its per-block frames verbatim (never decoded; each
frame's checksum verified from one read of the frames of its input granule) and its granule-level
columns and tag codes gathered with numpy from whole-input arrays, the codes remapped into the
output dictionary with one take per input. Copied blocks go to the writer in runs, so no Python
work is done per block beyond a list lookup. A key present in several inputs is decoded,
concatenated oldest part first, sorted, passed through the engine's equal-key rule, and
re-encoded. Every read is strict, so a torn input raises `CorruptPartError` naming that part; the
caller quarantines it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.format.compression import CODEC_ZSTD_DICT, ZstdDict
from lamina.format.part_meta import PartMeta
from lamina.format.part_reader import PartReader
from lamina.format.part_writer import PartTags, PartWriter, RawFrames, Sink, block_bounds
from lamina.format.rows import concat, object_array, row_sizes, rows_len, take
from lamina.format.tags import MAX_DICT, MODE_DICT, MODE_PLAIN, TagDict
from lamina.schema import FileLayout


def _output_tags(readers: list[PartReader]) -> tuple[PartTags, dict[tuple[int, str], np.ndarray]]:
    """Union the inputs' tag dictionaries. Starting from the largest keeps its codes unchanged."""
    names = sorted({t for r in readers for t in r.meta.tags})
    modes: dict[str, tuple[int, TagDict | None]] = {}
    maps: dict[tuple[int, str], np.ndarray] = {}
    for t in names:
        srcs = [(ri, r.tag_mode(t)) for ri, r in enumerate(readers) if t in r.meta.tags]
        if any(mode != MODE_DICT for _, (mode, _) in srcs):
            modes[t] = (MODE_PLAIN, None)
            continue
        srcs.sort(key=lambda s: -len(s[1][1]))  # type: ignore[arg-type]
        out = TagDict()
        local: dict[tuple[int, str], np.ndarray] = {}
        for ri, (_, d) in srcs:
            assert d is not None
            # one vectorised pass per input dictionary; same codes as adding value by value
            local[(ri, t)] = out.absorb(d)
        if len(out) > MAX_DICT:
            modes[t] = (MODE_PLAIN, None)
            continue
        modes[t] = (MODE_DICT, out)
        maps.update(local)
    return PartTags(modes), maps


# Output blocks copied raw per call to the writer: bounds the frames held in memory at once.
_COPY_CHUNK = 2048


def _stable_key_order(keys: list[bytes]) -> np.ndarray:
    """Indices that sort `keys` stably (equal keys keep their order)."""
    n = len(keys)
    width = len(keys[0]) if n else 0
    if n and width and all(len(k) == width for k in keys):
        # fixed width: numpy compares the bytes like memcmp (no NUL-stripping can matter)
        return np.argsort(np.array(keys, dtype=f"S{width}"), kind="stable")
    return np.array(sorted(range(n), key=keys.__getitem__), dtype=np.int64)


class _Plan:
    """Every input block in output order: by key, equal keys oldest input first, then by block.

    Blocks are numbered globally (input by input); `order[p]` is the block at output position p.
    """

    def __init__(self, readers: list[PartReader]) -> None:
        nblk = [len(r.blocks.keys) for r in readers]
        self.base = np.zeros(len(readers) + 1, dtype=np.int64)
        np.cumsum(nblk, out=self.base[1:])
        all_keys = [k for r in readers for k in r.blocks.keys]
        self.n = n = len(all_keys)
        src_ri = np.repeat(np.arange(len(readers), dtype=np.int64), nblk)
        self.ri: list[int] = src_ri.tolist()
        self.blk: list[int] = (np.arange(n, dtype=np.int64) - self.base[src_ri]).tolist()
        self.order = _stable_key_order(all_keys)
        self.keys_sorted = [all_keys[o] for o in self.order.tolist()]
        ks = object_array(self.keys_sorted)
        new = np.ones(n, dtype=bool)
        new[1:] = ks[1:] != ks[:-1]
        gstart = np.flatnonzero(new)
        gend = np.append(gstart[1:], n)
        gid = np.cumsum(new) - 1
        ri_sorted = src_ri[self.order]
        if n:
            one = np.minimum.reduceat(ri_sorted, gstart) == np.maximum.reduceat(ri_sorted, gstart)
        else:
            one = np.zeros(0, dtype=bool)
        self.group_end = gend[gid]  # per position: end of its group of equal keys
        self.in_one_input = one[gid]  # per position: its key occurs in one input only
        self.src_ri = src_ri


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), without a Python loop."""
    total = int(counts.sum())
    shift = starts - (np.cumsum(counts) - counts)
    return np.repeat(shift, counts) + np.arange(total, dtype=np.int64)


class _Copier:
    """Copies runs of output positions whose blocks are copied raw: granule-level columns and
    remapped tag codes are gathered from whole-input arrays with numpy, and block-mode frames come
    from one checksummed read per input granule and file (`PartReader.read_block_frames`)."""

    def __init__(
        self,
        readers: list[PartReader],
        raw_ok: list[bool],
        writer: PartWriter,
        ptags: PartTags,
        maps: dict[tuple[int, str], np.ndarray],
        plan: _Plan,
        light_cols: list[str],
    ) -> None:
        self.readers, self.writer, self.plan, self.light_cols = readers, writer, plan, light_cols
        nfiles = len(writer.block_files)
        self.nfiles = nfiles
        rows_l, lo_l, gran_l, local_l, ent_l = [], [], [], [], []
        cols: dict[str, list[np.ndarray]] = {c: [] for c in light_cols}
        tags: dict[str, list[np.ndarray]] = {t: [] for t in writer.tag_names}
        row_base = 0
        for ri, r in enumerate(readers):
            bt = r.blocks
            n = len(bt.keys)
            rows_l.append(bt.rows)
            if not raw_ok[ri]:  # never copied raw: placeholders only
                lo_l.append(np.zeros(n, dtype=np.int64))
                gran_l.append(np.zeros(n, dtype=np.int64))
                local_l.append(np.zeros(n, dtype=np.int64))
                ent_l.append(np.zeros((n, nfiles), dtype=bt.entries.dtype))
                continue
            grows = np.zeros(r.n_granules + 1, dtype=np.int64)
            np.cumsum(r.index.granules["rows"], out=grows[1:])
            gof = bt.granule_of.astype(np.int64)
            lo_l.append(row_base + grows[gof] + bt.row_lo)
            gran_l.append(gof)
            local_l.append(np.arange(n, dtype=np.int64) - r.granule_block_starts[gof])
            ent_l.append(bt.entries)
            row_base += r.meta.rows
            gs = range(r.n_granules)
            for c in light_cols:
                cols[c].append(np.concatenate([r.granule_column(g, c) for g in gs]))
            for t in writer.tag_names:
                mode, _ = ptags.modes[t]
                if t not in r.meta.tags:
                    nr = r.meta.rows
                    tags[t].append(np.zeros(nr, np.int64) if mode == MODE_DICT else np.full(nr, None, object))
                    continue
                codes = np.concatenate([r.granule_tag(g, t, codes=True) for g in gs])
                if mode == MODE_DICT:
                    tags[t].append(maps[(ri, t)][codes])  # remapped once per input
                elif r.tag_mode(t)[0] == MODE_DICT:
                    tags[t].append(r.tag_lookup(t)[codes])
                else:
                    tags[t].append(codes)
        self.rows = np.concatenate(rows_l).astype(np.int64)
        self.lo = np.concatenate(lo_l)
        self.gran = np.concatenate(gran_l)
        self.local = np.concatenate(local_l)
        ent = np.concatenate(ent_l)
        self.raw = [ent[:, j]["raw"] for j in range(nfiles)]
        self.crc = [ent[:, j]["crc"] for j in range(nfiles)]
        self.codec = [ent[:, j]["codec"] for j in range(nfiles)]
        self.cols = {c: np.concatenate(v) for c, v in cols.items() if v}
        self.tags = {t: np.concatenate(v) for t, v in tags.items() if v}
        # per input: granule -> per block file, its blocks' stored frames (checksums verified)
        self.loaded: list[dict[int, list[list[bytes]]]] = [{} for _ in readers]

    def copy(self, p0: int, p1: int) -> None:
        """Copy the blocks at output positions [p0, p1) (all copyable) to the writer."""
        plan = self.plan
        glob = plan.order[p0:p1]
        counts = self.rows[glob]
        idx = _ranges(self.lo[glob], counts)
        rows = {c: self.cols[c][idx] for c in self.light_cols}
        tag_data = {t: v[idx] for t, v in self.tags.items()}
        ri_l = plan.src_ri[glob].tolist()
        g_l = self.gran[glob].tolist()
        loc_l = self.local[glob].tolist()
        need: dict[int, set[int]] = {}
        for ri, g in zip(ri_l, g_l, strict=True):
            need.setdefault(ri, set()).add(g)
        for ri, gs in need.items():
            loaded = self.loaded[ri]
            first = min(gs)
            for g in [g for g in loaded if g < first]:  # each input is read in block order
                del loaded[g]
            for g in gs:
                if g not in loaded:
                    r = self.readers[ri]
                    loaded[g] = [r.read_block_frames(g, j) for j in range(self.nfiles)]
        loaded_all = self.loaded
        raws = []
        for j in range(self.nfiles):
            pays = [loaded_all[ri][g][j][k] for ri, g, k in zip(ri_l, g_l, loc_l, strict=True)]
            raws.append(RawFrames(pays, self.raw[j][glob], self.crc[j][glob], self.codec[j][glob]))
        self.writer.add_raw_blocks(plan.keys_sorted[p0:p1], counts.tolist(), rows, raws, tag_data)


def merge_parts(
    engine: Any,
    layout: FileLayout,
    readers: list[PartReader],
    sink: Sink,
    *,
    part_id: int,
    dataset: str,
    dictionary: ZstdDict | None,
    threads: int = 2,
) -> PartMeta:
    schema = engine.schema
    ptags, maps = _output_tags(readers)
    writer = PartWriter(sink, schema, layout, ptags, dictionary=dictionary, threads=threads)
    out_layout = {f: list(cols) for f, cols in layout.files}
    out_dict_id = writer.dictionary.dict_id if writer.dictionary is not None else 0
    raw_ok = [
        r.meta.layout == out_layout and r.meta.block_streams == [f for f, _ in writer.block_files]
        for r in readers
    ]
    granule_cols = [c for _, cols in writer.granule_files for c in cols]
    light_cols = list(dict.fromkeys([schema.timestamp, *granule_cols]))

    def tag_data_for(ri: int, i: int) -> dict[str, np.ndarray]:
        r = readers[ri]
        src = r.read_tags(i, None, codes=True)
        out: dict[str, np.ndarray] = {}
        for t, data in src.items():
            mode, _ = ptags.modes[t]
            if mode == MODE_DICT:
                out[t] = maps[(ri, t)][data]
            elif r.tag_mode(t)[0] == MODE_DICT:
                out[t] = r.tag_lookup(t)[data]
            else:
                out[t] = data
        return out

    def copy_block(ri: int, i: int, key: bytes) -> None:
        r = readers[ri]
        frames = r.iter_raw_frames(i) if raw_ok[ri] else None
        if frames is not None and any(
            codec == CODEC_ZSTD_DICT and (r.dictionary is None or r.dictionary.dict_id != out_dict_id)
            for codec, *_ in frames
        ):
            frames = None  # compressed with another dictionary: must be re-encoded
        if frames is None:
            writer.add_block(key, r.read_block(i, tags=[]) | {}, tag_data_for(ri, i))
            return
        writer.add_raw_block(key, r.read_block(i, columns=light_cols, tags=[]), frames, tag_data_for(ri, i))

    def merge_group(group: list[tuple[int, int]], key: bytes) -> None:
        rows = concat(schema, [readers[ri].read_block(i) for ri, i in group])
        rest = [rows[c] for c in reversed(schema.sort_key[1:])]
        if rest:
            rows = take(rows, np.lexsort(rest))
        rows = engine.equal_key_rule(rows)
        n = rows_len(rows)
        if n == 0:
            return
        for a, b in block_bounds(schema, [key] * n, row_sizes(schema, rows)):
            writer.add_block(key, take(rows, slice(a, b)))

    plan = _Plan(readers)
    # which blocks can be copied raw, by global block id
    block_ok = np.zeros(plan.n, dtype=bool)
    if schema.timestamp in granule_cols:  # else rows must come from blocks: per-block path only
        for ri, r in enumerate(readers):
            if not raw_ok[ri]:
                continue
            a, b = int(plan.base[ri]), int(plan.base[ri + 1])
            if r.dictionary is None or r.dictionary.dict_id != out_dict_id:
                # frames compressed with another dictionary must be re-encoded
                block_ok[a:b] = ~(r.blocks.entries["codec"] == CODEC_ZSTD_DICT).any(axis=1)
            else:
                block_ok[a:b] = True
    copyable = block_ok[plan.order] & plan.in_one_input  # by output position
    copier = _Copier(readers, raw_ok, writer, ptags, maps, plan, light_cols) if copyable.any() else None
    stops = [*np.flatnonzero(~copyable).tolist(), plan.n]
    order = plan.order.tolist()
    keys = plan.keys_sorted
    p = 0
    for q in stops:
        if p < q:
            assert copier is not None
            for c in range(p, q, _COPY_CHUNK):
                copier.copy(c, min(q, c + _COPY_CHUNK))
            p = q
        if q == plan.n:
            break
        if p > q:
            continue  # inside a merge group already written
        g_end = int(plan.group_end[q])
        group = [(plan.ri[o], plan.blk[o]) for o in order[q:g_end]]
        if len({ri for ri, _ in group}) == 1:
            for ri, i in group:
                copy_block(ri, i, keys[q])
        else:
            merge_group(group, keys[q])
        p = g_end
    return writer.finish(
        part_id=part_id,
        engine=engine.name,
        dataset=dataset,
        lineage=[r.meta.part_id for r in readers],
        level=max(r.meta.level for r in readers) + 1,
    )
