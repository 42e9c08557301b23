"""Every hookspec is documented in docs/hooks.md with its exact signature (datasette's meta-test)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lamina.hookspecs as hookspecs

DOC = (Path(__file__).resolve().parents[1] / "docs" / "hooks.md").read_text()


def test_every_hookspec_is_documented_with_its_exact_signature() -> None:
    specs = {n: f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("lamina_")}
    assert len(specs) >= 7
    documented = dict(re.findall(r"^def (lamina_\w+)(\(.*\).*)$", DOC, flags=re.M))
    assert set(documented) == set(specs), "hooks.md lists other hooks than hookspecs.py"
    for name, fn in specs.items():
        assert documented[name] == str(inspect.signature(fn)), f"{name}: documented signature differs"
        assert inspect.getdoc(fn), f"{name} has no docstring"
