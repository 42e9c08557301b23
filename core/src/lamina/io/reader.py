"""Strict reads: asking for n bytes and getting fewer is an error, never a silent EOF.

BanyanDB's sequential reader returned quietly on a clean EOF, so a file truncated at a block boundary
surfaced one block later as an offset panic, and a missing *last* block was never noticed at all.
"""

from __future__ import annotations

from lamina.errors import ShortReadError
from lamina.io.fs import ReadableFile


def read_exact(f: ReadableFile, offset: int, size: int) -> bytes:
    """Exactly `size` bytes at `offset`, or ShortReadError(file, offset, wanted, got)."""
    if size == 0:
        return b""
    data = f.pread(offset, size)
    if len(data) != size:
        raise ShortReadError(f.path, offset, size, len(data))
    return data
