"""Test support for Lamina and its engines: the kv reference engine (`lamina.testing.kv`), damage
helpers (`lamina.testing.damage`), and the contracts engine suites subclass
(`from lamina.testing import CorruptionContract, CrashContract`): corruption, and crash / power
loss / I/O errors (`lamina.testing.crash`, `faults`, `fuzz`, `torture`)."""

from __future__ import annotations

from typing import Any

try:  # rewrite the contract's asserts (readable failures in every engine's suite)
    import pytest

    pytest.register_assert_rewrite("lamina.testing.contract", "lamina.testing.crash_contract")
except ImportError:  # pytest is optional: the damage helpers work without it
    pass

__all__ = ["CorruptionContract", "CrashContract"]


def __getattr__(name: str) -> Any:
    if name == "CorruptionContract":
        from lamina.testing.contract import CorruptionContract

        return CorruptionContract
    if name == "CrashContract":
        from lamina.testing.crash_contract import CrashContract

        return CrashContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
