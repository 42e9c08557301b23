from __future__ import annotations

from collections.abc import Iterator

import pytest

import lamina
from lamina.io.sim import SimFS
from lamina.testing.kv import open_kv_store


@pytest.fixture
def sim() -> SimFS:
    return SimFS()


@pytest.fixture
def kv_store(tmp_path: object) -> Iterator[lamina.Store]:
    s = open_kv_store(str(tmp_path))
    yield s
    s.close()
