"""Statistics of relations and the estimates made with them: selectivity and join sizes.

Every number keeps where it came from (``pg_class.reltuples``, ``analyze``, ``parquet
metadata``, ``hub offsets``, ``default``) so that EXPLAIN can say it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp

from trunkline.engines._types import width as type_width
from trunkline.meta import ColumnStats

#: Rows assumed for a dataset nothing has measured.
DEFAULT_ROWS = 1000
#: Selectivity of a predicate the estimator cannot read (a LIKE, a function...).
DEFAULT_SELECTIVITY = 0.25
EQUALITY_WITHOUT_STATS = 0.05
RANGE_WITHOUT_STATS = 1 / 3


@dataclass(frozen=True, slots=True)
class ColumnEstimate:
    """What the estimator knows of one column."""

    kind: pa.DataType
    distinct: float | None = None
    nulls: float | None = None
    minimum: Any = None
    maximum: Any = None
    width: float = 8.0


@dataclass(frozen=True, slots=True)
class RelationStats:
    """Rows, bytes and columns of one dataset, with where each came from."""

    rows: float
    size_bytes: float | None
    columns: Mapping[str, ColumnEstimate]
    origin: str  # where rows came from
    column_origin: str = "none"  # where column statistics came from

    def width(self, names: list[str] | None = None) -> float:
        """Bytes per row of ``names`` (all columns if None)."""
        chosen = self.columns if names is None else [n for n in names if n in self.columns]
        return float(sum(self.columns[n].width for n in chosen)) or 8.0

    def distinct(self, name: str, rows: float | None = None) -> float:
        """Distinct values of a column among ``rows`` rows (the whole dataset by default)."""
        rows = self.rows if rows is None else rows
        column = self.columns.get(name)
        known = column.distinct if column is not None else None
        if known is None or known <= 0:
            known = self.rows  # unknown: assume a key, the conservative guess for joins
        return max(1.0, min(known, rows))


def relation_stats(
    rows: int | None,
    size_bytes: int | None,
    origin: str | None,
    columns: tuple[tuple[str, pa.DataType], ...],
    column_stats: Mapping[str, ColumnStats],
) -> RelationStats:
    """Combine the catalog's dataset and column statistics into what estimates use."""
    count = float(rows) if rows is not None else float(DEFAULT_ROWS)
    estimates = {}
    origins = set()
    for name, kind in columns:
        found = column_stats.get(name)
        width = type_width(kind)
        if found is None:
            estimates[name] = ColumnEstimate(kind, width=width)
            continue
        origins.add(found.source)
        if found.avg_width:
            width = float(found.avg_width)
        estimates[name] = ColumnEstimate(
            kind,
            distinct=None if found.distinct is None else float(found.distinct),
            nulls=None if found.nulls is None else float(found.nulls),
            minimum=_value(found.minimum, kind),
            maximum=_value(found.maximum, kind),
            width=width,
        )
    if size_bytes is None and rows is not None:
        size_bytes = int(count * sum(e.width for e in estimates.values()))
    return RelationStats(
        rows=count,
        size_bytes=None if size_bytes is None else float(size_bytes),
        columns=estimates,
        origin=origin or ("none (assumed 1,000 rows)" if rows is None else "catalog"),
        column_origin=", ".join(sorted(origins)) or "none",
    )


def _value(value: Any, kind: pa.DataType) -> Any:
    """A stored min/max in a form that compares with literals: numbers, or ordinals of dates."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        try:
            return dt.datetime.fromisoformat(str(value)[:19].replace(" ", "T")).timestamp()
        except ValueError:
            return None
    return str(value)


def _literal(node: exp.Expression) -> Any:
    """A constant as a number (dates as POSIX seconds) or text; None if not a constant."""
    if isinstance(node, exp.Paren):
        return _literal(node.this)
    if isinstance(node, exp.Neg):
        inner = _literal(node.this)
        return -inner if isinstance(inner, float) else None
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        text = node.this.name
        try:
            return dt.datetime.fromisoformat(text[:19].replace(" ", "T")).timestamp()
        except ValueError:
            return _literal(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.name
        try:
            return float(node.name)
        except ValueError:
            return None
    return None


@dataclass
class Estimator:
    """Selectivity of predicates over columns of known relations.

    ``columns`` maps a table alias to the statistics of the relation it names, with the
    rows the alias has after its own filters (for distinct counts of joins).
    """

    columns: dict[str, RelationStats] = field(default_factory=dict)

    def _column(self, node: exp.Expression) -> tuple[RelationStats, ColumnEstimate] | None:
        if not isinstance(node, exp.Column):
            return None
        stats = self.columns.get(node.table)
        if stats is None or node.name not in stats.columns:
            return None
        return stats, stats.columns[node.name]

    def selectivity(self, node: exp.Expression) -> float:
        """The fraction of rows ``node`` keeps, between 0 and 1."""
        value = self._selectivity(node)
        return min(1.0, max(value, 1e-9))

    def _selectivity(self, node: exp.Expression) -> float:
        if isinstance(node, exp.Paren):
            return self._selectivity(node.this)
        if isinstance(node, exp.And):
            return self._selectivity(node.this) * self._selectivity(node.expression)
        if isinstance(node, exp.Or):
            left, right = self._selectivity(node.this), self._selectivity(node.expression)
            return left + right - left * right
        if isinstance(node, exp.Not):
            return 1.0 - self._selectivity(node.this)
        if isinstance(node, exp.EQ):
            return self._equality(node)
        if isinstance(node, exp.NEQ):
            return 1.0 - self._equality(node)
        if isinstance(node, exp.GT | exp.GTE | exp.LT | exp.LTE):
            return self._range(node)
        if isinstance(node, exp.Between):
            low = self._bound(node.this, node.args["low"], lower=True)
            high = self._bound(node.this, node.args["high"], lower=False)
            if low is None or high is None:
                return RANGE_WITHOUT_STATS / 2
            return max(0.0, low + high - 1.0)
        if isinstance(node, exp.In) and node.args.get("query") is None:
            found = self._column(node.this)
            count = len(node.expressions)
            if found is None:
                return min(1.0, count * EQUALITY_WITHOUT_STATS)
            return min(1.0, count / found[0].distinct(node.this.name))
        if isinstance(node, exp.Is):
            found = self._column(node.this)
            if found is None or found[1].nulls is None or not found[0].rows:
                return 0.05
            return found[1].nulls / found[0].rows
        return DEFAULT_SELECTIVITY

    def _equality(self, node: exp.Binary) -> float:
        left, right = self._column(node.this), self._column(node.expression)
        if left is not None and right is not None:
            # A join condition inside one relation's scan: rare; treat as a key match.
            return 1.0 / max(left[0].distinct(node.this.name), 1.0)
        found = left or right
        column_node = node.this if left is not None else node.expression
        if found is None:
            return EQUALITY_WITHOUT_STATS
        stats, column = found
        if column.distinct is None:
            return EQUALITY_WITHOUT_STATS
        return 1.0 / stats.distinct(column_node.name)

    def _bound(
        self, column_node: exp.Expression, value: exp.Expression, *, lower: bool
    ) -> float | None:
        """Fraction of rows with column >= value (lower) or <= value (upper)."""
        found = self._column(column_node)
        constant = _literal(value)
        if found is None or not isinstance(constant, float):
            return None
        column = found[1]
        low, high = column.minimum, column.maximum
        if not isinstance(low, float) or not isinstance(high, float) or high <= low:
            return None
        fraction = (constant - low) / (high - low)
        fraction = min(1.0, max(0.0, fraction))
        return 1.0 - fraction if lower else fraction

    def _range(self, node: exp.Binary) -> float:
        column_node, value, flipped = node.this, node.expression, False
        if not isinstance(column_node, exp.Column):
            column_node, value, flipped = node.expression, node.this, True
        greater = isinstance(node, exp.GT | exp.GTE) != flipped
        estimate = self._bound(column_node, value, lower=greater)
        return RANGE_WITHOUT_STATS if estimate is None else estimate


def join_rows(
    left_rows: float, right_rows: float, left_distinct: float, right_distinct: float
) -> float:
    """Rows of an equi-join: |L| * |R| / max(distinct keys of either side)."""
    return left_rows * right_rows / max(left_distinct, right_distinct, 1.0)


def geometric(values: list[float]) -> float:
    """The geometric mean (1.0 for no values)."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 1.0
    return math.exp(sum(math.log(v) for v in positive) / len(positive))
