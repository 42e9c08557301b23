"""Lamina's trace engine: spans stored per trace ID. See `lamina_trace.plugin`."""

from lamina_trace.model import Span, TagFilter

__all__ = ["Span", "TagFilter"]
