"""Lamina's measure engine: metric points per series, versioned, with typed fields.

See `lamina_measure.plugin` for how a measure is defined and written, and
`lamina_measure.query.run` for the query parameters.
"""

from lamina_measure.model import AggregateResult, MeasureResult, Point
from lamina_measure.options import MeasureOptions
from lamina_measure.series import series_id

__all__ = ["AggregateResult", "MeasureOptions", "MeasureResult", "Point", "series_id"]
