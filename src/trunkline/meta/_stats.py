"""Planner statistics on an open connection: column stats, engine calibration, view SQL.

Functions here run inside a transaction :class:`~trunkline.meta.MetaStore` opened.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from trunkline.errors import ConfigError
from trunkline.meta import _lookup
from trunkline.meta import _validation as check
from trunkline.meta._schema import column_stats, dataset_views, engine_calibration
from trunkline.meta._types import ColumnStats


def _scalar(what: str, value: Any) -> str | None:
    """A min or max as stored: JSON text of a number or a string (dates as ISO text)."""
    if value is None:
        return None
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        # Estimates need magnitudes, not exact digits.
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{what} must be a number, text, date or None, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return json.dumps(value)


def replace_columns(conn: sa.Connection, dataset_id: int, stats: Sequence[ColumnStats]) -> None:
    """Replace every column statistic of a dataset with ``stats``."""
    rows = []
    seen: set[str] = set()
    stamp = _lookup.now()
    for item in stats:
        if not isinstance(item, ColumnStats):
            raise ConfigError(f"expected ColumnStats, not {item!r}")
        name = check.text("column name", item.column, limit=512)
        if name in seen:
            raise ConfigError(f"statistics of column {name!r} appear twice")
        seen.add(name)
        rows.append(
            {
                "dataset_id": dataset_id,
                "column_name": name,
                "distinct_count": check.statistic("distinct count", item.distinct),
                "null_count": check.statistic("null count", item.nulls),
                "min_value": _scalar("minimum", item.minimum),
                "max_value": _scalar("maximum", item.maximum),
                "avg_width": None if item.avg_width is None else float(item.avg_width),
                "source": check.text("statistics source", item.source),
                "updated_at": stamp,
            }
        )
    conn.execute(sa.delete(column_stats).where(column_stats.c.dataset_id == dataset_id))
    if rows:
        conn.execute(sa.insert(column_stats), rows)


def read_columns(conn: sa.Connection, dataset_id: int) -> dict[str, ColumnStats]:
    query = sa.select(column_stats).where(column_stats.c.dataset_id == dataset_id)
    result = {}
    for row in conn.execute(query):
        m = row._mapping
        result[m["column_name"]] = ColumnStats(
            column=m["column_name"],
            distinct=m["distinct_count"],
            nulls=m["null_count"],
            minimum=None if m["min_value"] is None else json.loads(m["min_value"]),
            maximum=None if m["max_value"] is None else json.loads(m["max_value"]),
            avg_width=m["avg_width"],
            source=m["source"],
            updated_at=m["updated_at"],
        )
    return result


def write_calibration(conn: sa.Connection, engine: str, factors: Mapping[str, float]) -> None:
    engine = check.text("engine name", engine, limit=100)
    stamp = _lookup.now()
    for factor, value in factors.items():
        factor = check.text("calibration factor", factor, limit=100)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"calibration factor {factor!r} must be a number >= 0")
        conn.execute(
            sa.delete(engine_calibration).where(
                engine_calibration.c.engine == engine, engine_calibration.c.factor == factor
            )
        )
        conn.execute(
            sa.insert(engine_calibration).values(
                engine=engine, factor=factor, value=float(value), measured_at=stamp
            )
        )


def read_calibration(conn: sa.Connection) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    query = sa.select(engine_calibration).order_by(
        engine_calibration.c.engine, engine_calibration.c.factor
    )
    for row in conn.execute(query):
        result.setdefault(row.engine, {})[row.factor] = row.value
    return result


def write_view(conn: sa.Connection, dataset_id: int, sql: str) -> None:
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError("a view needs a non-empty SQL query")
    conn.execute(sa.delete(dataset_views).where(dataset_views.c.dataset_id == dataset_id))
    conn.execute(sa.insert(dataset_views).values(dataset_id=dataset_id, sql=sql))


def read_view(conn: sa.Connection, dataset_id: int) -> str | None:
    query = sa.select(dataset_views.c.sql).where(dataset_views.c.dataset_id == dataset_id)
    value = conn.execute(query).scalar()
    return None if value is None else str(value)
