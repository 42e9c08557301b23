"""Lamina's stream engine: logs and events per series, queried by time range and tag filters.
See `lamina_stream.plugin` for the write format and `lamina_stream.query.scan` for queries."""

from lamina_stream.model import And, Element, Eq, Filter, Has, In, Or, QueryStats, Range, series_id

__all__ = ["And", "Element", "Eq", "Filter", "Has", "In", "Or", "QueryStats", "Range", "series_id"]
