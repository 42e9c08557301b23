"""All storage I/O goes through lamina.io: engines and store code never touch the OS directly.

A durability fix then lands once, in core/src/lamina/io, for every engine (BanyanDB had to patch
four engines separately and missed one)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(
    r"(^|[^.\w])open\(|\bos\.(fsync|replace|rename|remove|unlink|makedirs|mkdir|write|open|pread|listdir|rmdir|stat)\b"
    r"|\bshutil\.|\.write_bytes\(|\.write_text\(|\.read_bytes\(|\bimport shutil\b"
)
# The io layer is the one place allowed to touch the OS. The CLI only formats paths for display.
# The kill -9 torture talks to its forked writer over a pipe (os.write on a pipe, no storage).
ALLOWED = {"core/src/lamina/io/fs.py", "core/src/lamina/io/sim.py", "core/src/lamina/testing/torture.py"}


def _sources() -> list[Path]:
    files = list((ROOT / "core" / "src").rglob("*.py")) + list((ROOT / "plugins").glob("*/src/**/*.py"))
    return [f for f in files if f.relative_to(ROOT).as_posix() not in ALLOWED]


def test_scan_covers_core_and_every_engine() -> None:
    rels = {f.relative_to(ROOT).as_posix() for f in _sources()}
    assert "core/src/lamina/table.py" in rels and "plugins/trace/src/lamina_trace/plugin.py" in rels


def test_no_module_outside_io_touches_the_os() -> None:
    offenders = []
    for f in _sources():
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code) and "lamina.open" not in code and "def open(" not in code:
                offenders.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
