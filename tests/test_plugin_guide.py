"""The plugin guide shows the example engine's real files: every code block the guide introduces
with a file name is that file, byte for byte, so the tutorial cannot drift from code CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugin-guide.md").read_text()
BLOCK = re.compile(r"`(examples/[^`]+\.py)`:\n\n```python\n(.*?)```", re.S)


def test_every_file_the_guide_quotes_is_quoted_exactly() -> None:
    quoted = BLOCK.findall(GUIDE)
    assert len(quoted) >= 7, "the guide quotes fewer example files than expected"
    stale = [path for path, body in quoted if (ROOT / path).read_text() != body]
    assert stale == [], f"docs/plugin-guide.md quotes stale copies of {stale}"


def test_the_guide_names_every_contract_suite() -> None:
    for name in (
        "EngineContract",
        "MergeContract",
        "CorruptionContract",
        "CrashContract",
        "lamina.testing.fixtures",
    ):
        assert name in GUIDE, f"the plugin guide does not mention {name}"
