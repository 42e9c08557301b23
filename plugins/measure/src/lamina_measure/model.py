"""What measure queries return: columns first (numpy arrays), rows and Arrow tables on request.

Columnar because metric answers feed arrays, plots and dataframes; a row object per point would
cost more than the query. `to_arrow()` needs pyarrow, which is optional: it is imported on call.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np


@attrs.frozen
class Point:
    """One point, for callers that want rows (`MeasureResult.points()`)."""

    series: int
    timestamp: int
    version: int
    fields: dict[str, Any] = attrs.field(factory=dict, hash=False)
    #: The projected tags the point has (absent tags are left out).
    tags: dict[str, Any] = attrs.field(factory=dict, hash=False)


def _arrow(columns: dict[str, np.ndarray]) -> Any:
    try:
        import pyarrow as pa
    except ImportError:  # optional dependency: say how to get it
        raise ImportError(
            "to_arrow() needs pyarrow: pip install pyarrow (or lamina-measure[arrow])"
        ) from None
    out = {}
    for k, v in columns.items():
        try:
            out[k] = pa.array(v.tolist() if v.dtype == object else v)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # a tag holding str here, int there
            raise ValueError(f"column {k!r} cannot be one Arrow column: {e}") from None
    return pa.table(out)


@attrs.frozen(eq=False)
class MeasureResult:
    """Points of a query, as parallel columns in the order asked (time, then series ID)."""

    series: np.ndarray
    timestamp: np.ndarray
    version: np.ndarray
    fields: dict[str, np.ndarray]
    #: Projected tags: object arrays, None where a point lacks the tag.
    tags: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.timestamp)

    def columns(self) -> dict[str, np.ndarray]:
        """Flat columns: series, timestamp, version, each field, then `tags.<name>` per tag."""
        out = {"series": self.series, "timestamp": self.timestamp, "version": self.version}
        out.update(self.fields)
        out.update({f"tags.{t}": v for t, v in self.tags.items()})
        return out

    def points(self) -> list[Point]:
        fields = {f: v.tolist() for f, v in self.fields.items()}
        tags = {t: v.tolist() for t, v in self.tags.items()}
        return [
            Point(
                s,
                ts,
                ver,
                {f: col[i] for f, col in fields.items()},
                {t: col[i] for t, col in tags.items() if col[i] is not None},
            )
            for i, (s, ts, ver) in enumerate(
                zip(self.series.tolist(), self.timestamp.tolist(), self.version.tolist(), strict=True)
            )
        ]

    def to_arrow(self) -> Any:
        """A `pyarrow.Table` of `columns()` (needs pyarrow)."""
        return _arrow(self.columns())


@attrs.frozen(eq=False)
class AggregateResult:
    """An aggregate over a time range: one row per series (`by_series=True`, ordered by series
    ID, with the series' entity values) or one row over all series."""

    fn: str
    field: str | None
    #: Series IDs (per series), or None for an aggregate across series.
    series: np.ndarray | None
    #: Entity tag -> value per series (empty across series).
    entity: dict[str, np.ndarray]
    value: np.ndarray
    #: Points aggregated per row.
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    @property
    def scalar(self) -> Any:
        """The single value of an aggregate across series (None when no point matched min/max/avg)."""
        if self.series is not None:
            raise ValueError("a per-series aggregate has one value per series; use .value")
        v = self.value[0]
        return None if v is None else v.item() if isinstance(v, np.generic) else v

    def columns(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.series is not None:
            out["series"] = self.series
        out.update({f"tags.{t}": v for t, v in self.entity.items()})
        out["value"] = self.value
        out["count"] = self.count
        return out

    def by_entity(self) -> dict[tuple[Any, ...], Any]:
        """Per-series values keyed by the entity values (in entity order)."""
        if self.series is None:
            raise ValueError("an aggregate across series has no entities")
        keys = zip(*(v.tolist() for v in self.entity.values()), strict=True)
        return dict(zip(keys, self.value.tolist(), strict=True))

    def to_arrow(self) -> Any:
        return _arrow(self.columns())
