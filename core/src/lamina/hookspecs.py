"""Lamina's pluggy hook specifications.

Engines register through `lamina_register_engines`; the `firstresult` hooks let another plugin
override an engine's schema, merge policy or file layout without forking it (the engine's own
answer is the `trylast` default); the broadcasts serve observers such as metrics exporters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "lamina"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lamina_register_engines(register: Callable[[Any], None]) -> None:
    """Register engines: call ``register(engine)`` once per `lamina.Engine` this plugin provides."""


@hookspec(firstresult=True)
def lamina_block_schema(engine: Any, dataset: str) -> Any:
    """Return the `BlockSchema` for `dataset` of `engine`, or None to defer (first non-None wins).

    The engine's own schema is the default. Use this to extend a dataset's schema.
    """


@hookspec(firstresult=True)
def lamina_merge_policy(engine: Any, parts: list[Any]) -> Any:
    """Return the part IDs to merge next from `parts` (a list of `PartInfo`), `[]` to merge
    nothing, or None to defer to the default size-tiered policy."""


@hookspec(firstresult=True)
def lamina_file_layout(engine: Any) -> Any:
    """Return the `FileLayout` for `engine`'s new parts, or None to defer to the engine's own."""


@hookspec
def lamina_part_committed(engine: str, dataset: str, table: str, part: str, kind: str, rows: int) -> None:
    """A part became live (`kind` is "flush", "merge" or "salvage")."""


@hookspec
def lamina_part_quarantined(engine: str, table: str, part: str, reason: dict[str, Any]) -> None:
    """A damaged part was moved to `corrupt/`; `reason` is the content of its reason.json."""


@hookspec
def lamina_merge_finished(engine: str, table: str, inputs: list[str], output: str, seconds: float) -> None:
    """A merge committed `output` replacing `inputs`."""
