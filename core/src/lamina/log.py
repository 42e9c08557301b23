"""Lamina's logger. The library never configures sinks: `lamina/__init__` disables it until the
application calls `logger.enable("lamina")` (the CLI does, via `configure_logging`)."""

from __future__ import annotations

import sys

from loguru import logger

__all__ = ["configure_logging", "get_logger", "logger"]


def get_logger(**context: object):  # type: ignore[no-untyped-def]
    """A logger bound to structured context (engine=..., part=..., table=...)."""
    return logger.bind(**context)


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """For applications and the CLI only: one stderr sink, Lamina enabled."""
    logger.remove()
    fmt = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message} <dim>{extra}</dim>"
    logger.add(sys.stderr, level=level, serialize=json, format=fmt)
    logger.enable("lamina")
