"""K-way merge of parts into one, through the same writer and commit protocol as a flush.

Blocks are visited in key order across all inputs. A key present in one input only is copied:
its per-block frames verbatim (checksums verified, never decoded) and its granule-level columns by
slice; tag codes are remapped into the output dictionary with one numpy take. A key present in
several inputs is decoded, concatenated oldest part first, sorted, passed through the engine's
equal-key rule, and re-encoded. Every read is strict, so a torn input raises `CorruptPartError`
naming that part; the caller quarantines it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

import numpy as np

from lamina.format.compression import CODEC_ZSTD_DICT, ZstdDict
from lamina.format.part_meta import PartMeta
from lamina.format.part_reader import PartReader
from lamina.format.part_writer import PartTags, PartWriter, Sink, block_bounds
from lamina.format.rows import concat, row_sizes, rows_len, take
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
            local[(ri, t)] = np.fromiter(
                (0, *(out.add(v) for v in d.values)), dtype=np.int64, count=len(d) + 1
            )
        if len(out) > MAX_DICT:
            modes[t] = (MODE_PLAIN, None)
            continue
        modes[t] = (MODE_DICT, out)
        maps.update(local)
    return PartTags(modes), maps


def _keys(ri: int, r: PartReader) -> Iterator[tuple[bytes, int, int]]:
    for i, k in enumerate(r.blocks.keys):
        yield k, ri, i


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

    stream = heapq.merge(*(_keys(ri, r) for ri, r in enumerate(readers)))
    group: list[tuple[int, int]] = []
    gkey: bytes | None = None

    def emit() -> None:
        if len({ri for ri, _ in group}) == 1:
            for ri, i in group:
                copy_block(ri, i, gkey)  # type: ignore[arg-type]
        else:
            merge_group(group, gkey)  # type: ignore[arg-type]

    for key, ri, i in stream:
        if key != gkey and group:
            emit()
            group = []
        gkey = key
        group.append((ri, i))
    if group:
        emit()
    return writer.finish(
        part_id=part_id,
        engine=engine.name,
        dataset=dataset,
        lineage=[r.meta.part_id for r in readers],
        level=max(r.meta.level for r in readers) + 1,
    )
