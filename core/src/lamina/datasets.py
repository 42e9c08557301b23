"""Persisted dataset options: a dataset ("one measure") with its own schema, defined once.

Some engines cannot work from one static `BlockSchema`: a measure's fields and entity tags differ
per dataset. Such an engine declares `Engine.datasets = DatasetSupport(validate, specialize)`;
`EngineHandle.define(dataset, **options)` validates the options through the engine, stores them
durably in `<store>/<engine>/<dataset>/dataset.json` (written atomically, with a format version and
a checksum, parsed strictly), and every later open derives the dataset's engine (schema, layout,
normalize, query) from that file through `specialize`.

Why a file of its own and not part metadata: the options must be known before the first part is
written and after the last one is dropped by retention, and they must be the same for every part;
a part records what it holds, the dataset file records what the dataset *means*. Redefining a
dataset with other options is refused: stored parts are never silently reinterpreted.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from lamina.errors import InvalidInputError, LaminaError
from lamina.format.records import RecordError, dump_record, load_record, read_record_file
from lamina.io.durable import makedirs_durable, write_atomic
from lamina.io.fs import FileSystem

if TYPE_CHECKING:
    from lamina.engine import Engine

DATASET_FILE = "dataset.json"
DATASET_FORMAT_VERSION = 1
SUPPORTED_DATASET_VERSIONS = (1,)


@attrs.frozen(kw_only=True)
class DatasetSupport:
    """What an engine with per-dataset options provides.

    `validate(options) -> options`: check the caller's options and return them canonical and
    JSON-serialisable (plain dicts, lists, str, int, float, bool), raising `InvalidInputError`
    naming the option. Two definitions are the same iff their canonical forms are equal.
    `specialize(engine, options) -> Engine`: the engine as it serves that dataset (its schema,
    layout, normalize, query, equal-key rule); must keep the name, API version and segment
    interval. It must be pure: it runs at every open, on the stored canonical options.
    """

    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    specialize: Callable[[Engine, Mapping[str, Any]], Engine]


@attrs.frozen
class DatasetRecord:
    """The content of `dataset.json` (format_version first, like every Lamina record)."""

    format_version: int
    engine: str
    dataset: str
    #: The canonical options as JSON text: the record stays strictly typed whatever an engine's
    #: options look like, and the checksum covers them byte for byte.
    options_json: str


class DatasetError(LaminaError):
    """A dataset's options file is missing, damaged or of an unknown format: the dataset cannot
    be opened, because its parts cannot be interpreted without it."""

    def __init__(self, path: str, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(f"dataset options {path}: {detail}")


def dataset_file(store_path: str, engine: str, dataset: str) -> str:
    return posixpath.join(store_path, engine, dataset, DATASET_FILE)


def canonical_json(options: Mapping[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, separators=(",", ":"))


def load_options(fs: FileSystem, store_path: str, engine: str, dataset: str) -> dict[str, Any] | None:
    """The stored options of a dataset, or None if it was never defined. Damage raises."""
    path = dataset_file(store_path, engine, dataset)
    if not fs.exists(path):
        return None
    try:  # an environment error (EACCES, EIO) propagates as one: it is not damaged options
        rec = load_record(read_record_file(fs, path), DatasetRecord, SUPPORTED_DATASET_VERSIONS)
    except RecordError as e:
        raise DatasetError(path, str(e)) from None
    if rec.engine != engine or rec.dataset != dataset:
        raise DatasetError(path, f"belongs to {rec.engine}/{rec.dataset}, not {engine}/{dataset}")
    try:
        options = json.loads(rec.options_json)
    except ValueError as e:
        raise DatasetError(path, f"options are not JSON: {e}") from None
    if not isinstance(options, dict):
        raise DatasetError(path, "options are not a JSON object")
    return options


def store_options(
    fs: FileSystem, store_path: str, engine: str, dataset: str, options: dict[str, Any]
) -> None:
    """Write the options durably: the dataset directory first (fsynced into its parent), then the
    file atomically (tmp, fsync, rename, fsync dir). A crash leaves no file or the whole file."""
    path = dataset_file(store_path, engine, dataset)
    makedirs_durable(fs, posixpath.dirname(path))
    rec = DatasetRecord(DATASET_FORMAT_VERSION, engine, dataset, canonical_json(options))
    write_atomic(fs, path, dump_record(rec))


def canonical_options(engine: Engine, dataset: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate through the engine; the result must survive a JSON round trip unchanged."""
    support = engine.datasets
    if support is None:
        raise InvalidInputError(
            "dataset", f"engine {engine.name!r} has no per-dataset options", engine=engine.name
        )
    canon = support.validate(options)
    try:
        text = canonical_json(canon)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{engine.name}: validate() returned options that are not JSON: {e}") from None
    if json.loads(text) != canon:
        raise TypeError(f"{engine.name}: validate() returned options that change in a JSON round trip")
    return canon


def specialize(engine: Engine, dataset: str, options: Mapping[str, Any]) -> Engine:
    """The engine serving `dataset` with `options`, checked to still be the same engine."""
    assert engine.datasets is not None
    out = engine.datasets.specialize(engine, options)
    for field in ("name", "api_version", "segment_interval_ns"):
        if getattr(out, field) != getattr(engine, field):
            raise TypeError(f"{engine.name}: specialize() changed {field} for dataset {dataset!r}")
    return out


def engine_for(fs: FileSystem, store_path: str, engine: Engine, dataset: str) -> Engine:
    """The engine as it serves `dataset`: itself, or specialised by the stored options. An engine
    with per-dataset options whose dataset has no options file cannot read that dataset's parts."""
    if engine.datasets is None:
        return engine
    options = load_options(fs, store_path, engine.name, dataset)
    if options is None:
        raise DatasetError(
            dataset_file(store_path, engine.name, dataset),
            f"missing: dataset {dataset!r} of engine {engine.name!r} was never defined "
            f"(call define({dataset!r}, ...) first)",
        )
    return specialize(engine, dataset, options)
