"""The example engine in examples/events, used the way a third party would use it: installed as
its own distribution, discovered by entry point, its own suite (the corruption contract included)
green, and built on the public API only (`lamina` and `lamina.testing`, no private module)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "events"
PUBLIC = {"lamina", "lamina.testing"}


def _uv() -> list[str] | None:
    """How to run uv from here: `python -m uv` when uv is installed as a module, else the uv
    binary that `uv run` names in $UV, else one on PATH."""
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    exe = os.environ.get("UV") or shutil.which("uv")
    return [exe] if exe else None


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Install the example (no deps: lamina is already here) into a private directory and return
    the environment that puts it on `sys.path` of a child process.

    Never into this environment: other xdist workers, and the CLI tests that assert `lamina
    engines` loads cleanly, share it, and a worker started before the install sees the
    distribution's metadata without being able to import its module."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is neither importable (`python -m uv`) nor on PATH: cannot install the example")
    target = tmp_path_factory.mktemp("events-example")
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "--python",
            sys.executable,
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_example_is_discovered_by_entry_point(installed: dict[str, str]) -> None:
    # a fresh interpreter: the install is on the child's PYTHONPATH only
    code = textwrap.dedent(
        """
        import json
        import lamina
        from lamina.plugins import load_registry
        reg = load_registry()
        eng = reg.engines.get("events")
        print(json.dumps({
            "source": reg.sources.get("events"),
            "api": eng.api_version if eng else None,
            "problems": [str(p) for p in reg.problems],
            "api_version": lamina.API_VERSION,
        }))
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=installed
    )
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["source"] is not None, f"events engine not discovered: {got}"
    assert got["source"].startswith("lamina-events-example "), got
    assert got["api"] == got["api_version"]
    assert got["problems"] == []


def test_lamina_engines_lists_the_example_with_its_distribution(installed: dict[str, str]) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "engines"],
        capture_output=True,
        text=True,
        env={**installed, "COLUMNS": "200"},
    )
    assert p.returncode == 0, p.stderr
    row = next((line for line in p.stdout.splitlines() if " events " in line), None)
    assert row is not None, f"`lamina engines` does not list the example:\n{p.stdout}"
    assert "lamina-events-example" in row


def test_example_suite_passes(installed: dict[str, str]) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            str(EXAMPLE / "tests"),
        ],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=installed,
    )
    assert p.returncode == 0, f"example suite failed:\n{p.stdout[-5000:]}\n{p.stderr[-2000:]}"
    assert " passed" in p.stdout and " failed" not in p.stdout
    # the example inherits every contract suite, not just one
    for contract in ("TestEventsCorruption", "TestEventsCrash", "TestEventsEngine", "TestEventsMerges"):
        assert contract in _collected(installed), f"{contract} is not collected from the example suite"


def _collected(env: dict[str, str]) -> str:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            str(EXAMPLE / "tests"),
        ],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=env,
    )
    return p.stdout


def _is_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _lamina_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of `lamina` or a submodule of it in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
            if node.module == "lamina":  # `from lamina import format` reaches a private module too
                mods += [f"lamina.{a.name}" for a in node.names if _is_submodule(f"lamina.{a.name}")]
        else:
            continue
        found += [(node.lineno, m) for m in mods if m == "lamina" or m.startswith("lamina.")]
    return found


def test_example_imports_only_the_public_api() -> None:
    sources = sorted((EXAMPLE / "src").rglob("*.py"))
    assert sources, "no example sources found"
    seen, private = [], []
    for f in sources:
        for line, mod in _lamina_imports(f):
            seen.append(mod)
            if mod not in PUBLIC:
                private.append(f"{f.relative_to(ROOT)}:{line}: {mod}")
    assert "lamina" in seen, "the scan found no lamina import at all"
    assert private == [], "the example imports private lamina modules"
