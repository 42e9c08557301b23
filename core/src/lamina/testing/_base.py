"""The fixtures every contract suite takes (engine, sample batches, query_all) and the file system
and store root they run on: one definition, so the four contracts cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lamina
from lamina.io.fs import FileSystem, OSFileSystem
from lamina.io.sim import SimFS


class ContractFixtures:
    """Override `engine`, `sample_batches` and `query_all`; optionally `fs` (default SimFS)."""

    @pytest.fixture
    def engine(self) -> lamina.Engine:
        pytest.fail(f"{type(self).__name__} must override the `engine` fixture")

    @pytest.fixture
    def sample_batches(self) -> list[Any]:
        pytest.fail(f"{type(self).__name__} must override the `sample_batches` fixture")

    @pytest.fixture
    def query_all(self) -> Callable[[lamina.EngineHandle], list[Any]]:
        pytest.fail(f"{type(self).__name__} must override the `query_all` fixture")

    @pytest.fixture
    def fs(self) -> FileSystem:
        return SimFS()

    @pytest.fixture
    def store_root(self, fs: FileSystem, request: pytest.FixtureRequest) -> str:
        if isinstance(fs, OSFileSystem):
            return str(request.getfixturevalue("tmp_path") / "store")
        return "/store"
