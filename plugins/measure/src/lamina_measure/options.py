"""A measure's definition: its entity tags (which name a series) and its typed fields.

These are the dataset options the core persists (`EngineHandle.define("cpu", entity=[...],
fields={...})`). `validate` returns them canonical, so defining the same measure twice, with the
fields as a dict or as pairs, is recognised as the same definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from lamina import InvalidInputError
from lamina.batch import utf8_problem

ENGINE_NAME = "measure"
FIELD_TYPES = ("int64", "float64", "string", "bytes")
#: Columns every measure has; a field may not take their names.
RESERVED = frozenset({"series", "timestamp", "version", "tags"})
#: Matched whole (`fullmatch`): a `$` also matches before a trailing newline.
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_FIELDS = 256
MAX_ENTITY = 16


@attrs.frozen
class MeasureOptions:
    """A measure's definition, canonical: entity tag names in order, fields as (name, type)."""

    entity: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]

    @property
    def field_names(self) -> list[str]:
        return [f for f, _ in self.fields]

    def field_type(self, name: str) -> str:
        for f, t in self.fields:
            if f == name:
                return t
        raise KeyError(name)

    def canonical(self) -> dict[str, Any]:
        return {"entity": list(self.entity), "fields": [[f, t] for f, t in self.fields]}


def _bad(option: str, problem: str) -> InvalidInputError:
    return InvalidInputError(option, problem, engine=ENGINE_NAME)


def parse(options: Mapping[str, Any]) -> MeasureOptions:
    """Check a measure definition; every problem names the option (and the entry) at fault."""
    if not isinstance(options, Mapping):
        raise _bad("options", f"expected a mapping, got {type(options).__name__}")
    unknown = set(options) - {"entity", "fields"}
    if unknown:
        raise _bad(sorted(unknown)[0], "unknown option (a measure takes: entity, fields)")
    entity = options.get("entity")
    if entity is None:
        raise _bad("entity", "missing: the tags whose values name a series")
    if isinstance(entity, str | bytes) or not isinstance(entity, list | tuple):
        raise _bad("entity", f"expected a list of tag names, got {type(entity).__name__}")
    if not 1 <= len(entity) <= MAX_ENTITY:
        raise _bad("entity", f"must name 1 to {MAX_ENTITY} tags, got {len(entity)}")
    for i, t in enumerate(entity):
        if type(t) is not str or not 0 < len(t) <= 200:
            raise _bad(f"entity[{i}]", f"tag name must be a non-empty str of at most 200 chars, got {t!r}")
        if (problem := utf8_problem(t)) is not None:  # the tag could never be written
            raise _bad(f"entity[{i}]", f"tag name {t!r} {problem}")
    if len(set(entity)) != len(entity):
        raise _bad("entity", f"repeats a tag: {list(entity)}")
    fields = options.get("fields")
    if fields is None:
        raise _bad("fields", "missing: the typed values each point carries")
    pairs = list(fields.items()) if isinstance(fields, Mapping) else fields
    if isinstance(pairs, str | bytes) or not isinstance(pairs, list | tuple):
        raise _bad("fields", f"expected a mapping or pairs of name -> type, got {type(fields).__name__}")
    if not 1 <= len(pairs) <= MAX_FIELDS:
        raise _bad("fields", f"must define 1 to {MAX_FIELDS} fields, got {len(pairs)}")
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _bad(f"fields[{i}]", f"expected (name, type), got {pair!r}")
        name, tp = pair
        if type(name) is not str or not _IDENT.fullmatch(name):
            raise _bad(f"fields[{i}]", f"name {name!r} must be an identifier of at most 63 characters")
        if name in RESERVED:
            raise _bad(f"fields.{name}", f"is reserved (reserved: {', '.join(sorted(RESERVED))})")
        if tp not in FIELD_TYPES:
            raise _bad(f"fields.{name}", f"type {tp!r} is not one of {', '.join(FIELD_TYPES)}")
        out.append((name, tp))
    if len({n for n, _ in out}) != len(out):
        raise _bad("fields", f"repeats a field name: {[n for n, _ in out]}")
    return MeasureOptions(tuple(entity), tuple(out))


def validate(options: Mapping[str, Any]) -> dict[str, Any]:
    """`DatasetSupport.validate`: the canonical, JSON-ready form of a definition."""
    return parse(options).canonical()
