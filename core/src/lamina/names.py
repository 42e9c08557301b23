"""Every on-disk name Lamina uses, built and parsed in one place (LevelDB's filename.h lesson)."""

from __future__ import annotations

import posixpath
import re
from datetime import UTC, datetime

import xxhash

STORE_DESCRIPTOR = "lamina.json"
STORE_LOCK = "lamina.lock"
METADATA = "metadata.json"
META_INDEX = "meta.bin"
PRIMARY = "primary.bin"
DICTIONARY = "zstd.dict"
#: Per-block, per-tag Bloom filters and int min/max (layouts with `tag_filters=True`).
TAG_FILTERS = "tags.tff"
CORRUPT_DIR = "corrupt"
#: What mkfs leaves at the root of a new ext2/3/4 file system: a store may live right there.
LOST_FOUND = "lost+found"
REASON = "reason.json"
TMP_SUFFIX = ".tmp"
DROPPING_SUFFIX = ".dropping"
TAG_DATA_EXT = ".t"
TAG_META_EXT = ".tm"
#: Store-level directory of multi-table transaction intents (txn.py).
TXN_DIR = "txn"

# Every name is matched whole (`fullmatch`) and in ASCII: `$` also matches before a trailing
# newline, and `\d` accepts any Unicode digit, so "0000000000000001\n" or "shard-\u0660" would
# parse as Lamina's own names.
_PART = re.compile(r"[0-9a-f]{16}")
_MANIFEST = re.compile(r"([0-9a-f]{16})\.snp")
_SEGMENT = re.compile(r"seg-([0-9]{8}|[0-9]{12})")
_SHARD = re.compile(r"shard-([0-9]+)")
#: Dataset names, matched whole (`fullmatch`: a `$` would also match before a trailing newline, and
#: "default\n" would become a directory name).
_DATASET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def part_name(part_id: int) -> str:
    return f"{part_id:016x}"


def parse_part_name(name: str) -> int | None:
    return int(name, 16) if _PART.fullmatch(name) else None


def manifest_name(epoch: int) -> str:
    return f"{epoch:016x}.snp"


def parse_manifest_name(name: str) -> int | None:
    m = _MANIFEST.fullmatch(name)
    return int(m.group(1), 16) if m else None


_INTENT = re.compile(r"([0-9a-f]{16})\.intent")


def intent_name(txn_id: int) -> str:
    return f"{txn_id:016x}.intent"


def parse_intent_name(name: str) -> int | None:
    m = _INTENT.fullmatch(name)
    return int(m.group(1), 16) if m else None


def valid_dataset(name: object) -> bool:
    """Whether `name` may name a dataset directory: 1 to 100 of A-Z a-z 0-9 _ . -, not starting
    with . or - (so never "..", a hidden or an option-like name). False for anything not a str."""
    return type(name) is str and _DATASET.fullmatch(name) is not None


_DAY_NS = 86_400 * 10**9


def segment_name(start_ns: int, interval_ns: int) -> str:
    t = datetime.fromtimestamp(start_ns / 1e9, tz=UTC)
    return "seg-" + (t.strftime("%Y%m%d") if interval_ns % _DAY_NS == 0 else t.strftime("%Y%m%d%H%M"))


def parse_segment_name(name: str) -> int | None:
    m = _SEGMENT.fullmatch(name)
    if not m:
        return None
    s = m.group(1)
    fmt = "%Y%m%d" if len(s) == 8 else "%Y%m%d%H%M"
    dt = datetime.strptime(s, fmt).replace(tzinfo=UTC)
    return int(dt.timestamp()) * 10**9


def shard_name(n: int) -> str:
    return f"shard-{n}"


def parse_shard_name(name: str) -> int | None:
    m = _SHARD.fullmatch(name)
    return int(m.group(1)) if m else None


def table_dir(root: str, engine: str, dataset: str, segment: str, shard: int) -> str:
    return posixpath.join(root, engine, dataset, segment, shard_name(shard))


_SAFE = re.compile(r"[A-Za-z0-9_.-]")


MAX_STEM = 120


def tag_file_stem(tag: str) -> str:
    """A file-system-safe stem for a user tag name (`k8s/pod` -> `k8s%2Fpod`).

    A leading dot is escaped too, so no tag can produce a hidden or `..` name. Escaping can triple
    a name's length; a stem longer than MAX_STEM keeps its first 100 characters plus a 64-bit hash
    of the whole name, so every file name stays far below the 255-byte limit of file systems.
    """
    out = []
    for i, ch in enumerate(tag):
        if _SAFE.match(ch) and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    stem = "".join(out)
    if len(stem) > MAX_STEM:
        stem = f"{stem[:100]}~{xxhash.xxh3_64_hexdigest(tag.encode())}"
    return stem


def tag_data_file(tag: str) -> str:
    return tag_file_stem(tag) + TAG_DATA_EXT


def tag_meta_file(tag: str) -> str:
    return tag_file_stem(tag) + TAG_META_EXT
