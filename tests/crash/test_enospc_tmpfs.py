"""A real disk-full test (issue 7 part 5): the store lives on a tiny tmpfs, flushes until the
kernel answers ENOSPC, and must then fail cleanly, lose nothing acknowledged, and work again once
space is freed. Needs root to mount a tmpfs; skipped (with the reason) otherwise."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamina
from lamina.check import check_store
from lamina.errors import PoisonedTableError
from lamina.testing.kv import KV, kv_batch

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _batch(seq: int) -> dict[str, Any]:
    keys = [b"s%04d-%03d" % (seq, j) for j in range(200)]
    return kv_batch(keys, [T0 + seq * 1000 + j for j in range(200)], [os.urandom(64) for _ in keys])


def _keys(store: lamina.Store) -> list[bytes]:
    return sorted(r[0] for r in store.engine("kv").query())


def test_real_enospc_fails_the_flush_cleanly_and_a_retry_after_freeing_space_succeeds(
    small_mount: Path,
) -> None:
    ballast = small_mount / "ballast"
    ballast.write_bytes(os.urandom(96 * 1024))  # freed later, to make room again
    path = str(small_mount / "store")
    store = lamina.Store(path, engines=[KV], background=False)
    kv = store.engine("kv")
    acked: list[bytes] = []
    failure: OSError | None = None
    for seq in range(200):
        batch = _batch(seq)
        kv.write(batch)
        try:
            kv.flush()
        except OSError as e:
            failure = e
            pending = batch["key"]
            break
        acked += batch["key"]
    assert failure is not None, "the tmpfs never filled up"
    assert failure.errno == errno.ENOSPC, failure
    assert acked, "not even one flush fitted: the test proves nothing"
    assert _keys(store) == sorted([*acked, *pending])  # acknowledged + still buffered, once each
    poisoned = any(t.poisoned for t in kv.tables())
    ballast.unlink()
    if poisoned:  # an fsync reported the failure: reopen, as the poison demands
        with pytest.raises(PoisonedTableError):
            kv.flush()
        store.close()
        store = lamina.Store(path, engines=[KV], background=False)
        assert _keys(store) == sorted(acked)
        store.engine("kv").write(_batch(seq))
    store.engine("kv").flush()  # the retry, once space was freed
    store.close()
    again = lamina.Store(path, engines=[KV], background=False)
    try:
        assert _keys(again) == sorted([*acked, *pending])
        assert check_store(path, deep=True, registry=again.registry).ok
    finally:
        again.close()
