"""Test support for Lamina and its engines (behind the `lamina[testing]` extra).

- Contract suites an engine's tests subclass, providing `engine`, `sample_batches` and `query_all`
  fixtures: `EngineContract` (write/flush/read/reopen, bad input, concurrent queries, no file I/O),
  `MergeContract` (merges preserve rows, clean up, record lineage), `CorruptionContract` (damage is
  quarantined, healthy rows survive), `CrashContract` (crash at every file-system operation,
  power loss, I/O errors, corruption fuzzing: `lamina.testing.crash`, `faults`, `fuzz`,
  `torture`). Capabilities an engine does not declare are skipped.
- `Ledger`: the rows a store must return for a set of written batches.
- `lamina.testing.fixtures`: opt-in pytest fixtures (`pytest_plugins = ["lamina.testing.fixtures"]`).
- `lamina.testing.kv`: the minimal reference engine; `lamina.testing.damage`: damage helpers.
"""

from __future__ import annotations

from typing import Any

try:  # rewrite the contracts' asserts (readable failures in every engine's suite)
    import pytest

    pytest.register_assert_rewrite(
        "lamina.testing.contract",
        "lamina.testing.crash_contract",
        "lamina.testing.engine_contract",
        "lamina.testing.fixtures",
        "lamina.testing.ledger",
    )
except ImportError:  # pytest is optional: the damage helpers work without it
    pass

__all__ = [
    "CorruptionContract",
    "CrashContract",
    "EngineContract",
    "Ledger",
    "MergeContract",
    "assert_no_direct_io",
]

_LAZY = {
    "CorruptionContract": "lamina.testing.contract",
    "CrashContract": "lamina.testing.crash_contract",
    "EngineContract": "lamina.testing.engine_contract",
    "MergeContract": "lamina.testing.engine_contract",
    "assert_no_direct_io": "lamina.testing.engine_contract",
    "Ledger": "lamina.testing.ledger",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
