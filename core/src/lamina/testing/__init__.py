"""Test support for Lamina and its engines: the kv reference engine (`lamina.testing.kv`), damage
helpers (`lamina.testing.damage`) and the corruption contract engine suites subclass
(`from lamina.testing import CorruptionContract`)."""

from __future__ import annotations

from typing import Any

try:  # rewrite the contract's asserts (readable failures in every engine's suite)
    import pytest

    pytest.register_assert_rewrite("lamina.testing.contract")
except ImportError:  # pytest is optional: the damage helpers work without it
    pass

__all__ = ["CorruptionContract"]


def __getattr__(name: str) -> Any:
    if name == "CorruptionContract":
        from lamina.testing.contract import CorruptionContract

        return CorruptionContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
