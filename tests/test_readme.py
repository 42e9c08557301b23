"""The README's Python examples run as written (in a scratch directory), and the answers they
compute are the ones the comments promise: the first thing a user copies must work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _run(code: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(where)
    scope: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


def test_the_readme_has_its_examples() -> None:
    assert len(BLOCKS) >= 2


def test_trace_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    got = _run(BLOCKS[0], tmp_path, monkeypatch)
    assert [s.span_id for s in got["spans"]] == [b"s1", b"s2"]
    assert [s.span_id for s in got["slow"]] == [b"s1"]
    assert "StoreStats" in capsys.readouterr().out


def test_engines_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = _run(BLOCKS[1], tmp_path, monkeypatch)
    assert got["avg"] == pytest.approx(12.5)  # (11.0 + 14.0) / 2: the correction (version 1) won
    assert [e.element_id for e in got["errors"]] == ["l2"]
    slowest = got["slowest"]
    assert [(t.trace_id, t.key) for t in slowest] == [(b"a", 900), (b"b", 40)]
    assert all(t.spans for t in slowest)
