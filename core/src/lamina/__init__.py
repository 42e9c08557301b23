"""Lamina: crash-safe, plugin-based columnar storage for observability data.

Everything an application or an engine author needs is exported here (tests: `lamina.testing`);
every other module is private and may change.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from loguru import logger as _logger

try:
    __version__ = version("lamina")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

# A library never configures logging; it stays silent until the application enables it.
_logger.disable("lamina")

from lamina.datasets import DatasetError, DatasetSupport  # noqa: E402
from lamina.engine import (  # noqa: E402
    API_VERSION,
    Capabilities,
    DemoQuery,
    DemoReport,
    Engine,
    MergePolicyParams,
)
from lamina.errors import (  # noqa: E402
    CorruptionReason,
    CorruptManifestError,
    CorruptPartError,
    DuplicateEngineError,
    InvalidInputError,
    LaminaError,
    MissingPartError,
    PluginError,
    PoisonedTableError,
    ShortReadError,
    UnknownEngineError,
)
from lamina.format.part_reader import PartReader  # noqa: E402
from lamina.format.part_writer import key_of as block_key  # noqa: E402
from lamina.format.rows import Rows  # noqa: E402
from lamina.format.rows import concat as concat_rows  # noqa: E402
from lamina.format.rows import take as take_rows  # noqa: E402
from lamina.hookspecs import hookimpl  # noqa: E402
from lamina.log import configure_logging  # noqa: E402
from lamina.query import QueryContext  # noqa: E402
from lamina.schema import BlockSchema, Column, ColumnKind, FileLayout  # noqa: E402
from lamina.store import EngineHandle, Store, open  # noqa: E402

__all__ = [
    "API_VERSION",
    "BlockSchema",
    "Capabilities",
    "Column",
    "ColumnKind",
    "CorruptManifestError",
    "CorruptPartError",
    "CorruptionReason",
    "DatasetError",
    "DatasetSupport",
    "DemoQuery",
    "DemoReport",
    "DuplicateEngineError",
    "Engine",
    "EngineHandle",
    "FileLayout",
    "InvalidInputError",
    "LaminaError",
    "MergePolicyParams",
    "MissingPartError",
    "PartReader",
    "PluginError",
    "PoisonedTableError",
    "QueryContext",
    "Rows",
    "ShortReadError",
    "Store",
    "UnknownEngineError",
    "__version__",
    "block_key",
    "concat_rows",
    "configure_logging",
    "hookimpl",
    "open",
    "take_rows",
]
