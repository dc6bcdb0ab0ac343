"""Discovering an existing system's datasets, and measuring their statistics.

``trunkline catalog add KIND NAME LOCATION`` calls :func:`discover` (tables, columns, types,
row estimates from the source's own statistics); ``trunkline analyze`` calls
:func:`analyze` (rows, bytes, and per column distinct count, null count, min and max).
Each system kind has one discoverer and one analyzer, dispatched by table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from trunkline.engines._files import discover_parquet, parquet_files
from trunkline.engines._types import sql_type
from trunkline.errors import ConfigError, EngineError
from trunkline.meta import Column, ColumnStats


@dataclass(frozen=True, slots=True)
class Discovered:
    """A dataset found in a system, with what the system itself says about its size."""

    name: str
    kind: str  # "table", "view" or "fileset"
    columns: tuple[Column, ...]
    rows: int | None
    size_bytes: int | None
    stats_source: str
    column_stats: tuple[ColumnStats, ...] = ()


@dataclass(frozen=True, slots=True)
class Measured:
    """Statistics measured by ``trunkline analyze``."""

    rows: int
    size_bytes: int | None
    source: str
    columns: tuple[ColumnStats, ...]


#: What a system's location and options are to each discoverer / analyzer.
Discoverer = Callable[[str, Mapping[str, Any], Mapping[str, str] | None], list[Discovered]]
Analyzer = Callable[[str, Mapping[str, Any], str, Mapping[str, str] | None], Measured]

_DISCOVERERS: dict[str, str] = {
    "postgres": "trunkline.engines._pg_catalog:discover",
    "duckdb": "trunkline.engines._discover:discover_duckdb",
    "parquet": "trunkline.engines._discover:discover_lake",
    "iceberg": "trunkline.engines.iceberg:discover",
}
_ANALYZERS: dict[str, str] = {
    "postgres": "trunkline.engines._pg_catalog:analyze",
    "duckdb": "trunkline.engines._discover:analyze_duckdb",
    "parquet": "trunkline.engines._discover:analyze_lake",
    "iceberg": "trunkline.engines.iceberg:analyze",
}


def _load(table: dict[str, str], kind: str, what: str) -> Any:
    target = table.get(kind)
    if target is None:
        known = ", ".join(sorted(table))
        raise ConfigError(f"trunkline cannot {what} {kind!r} systems; it can for: {known}")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def discover(
    kind: str, location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[Discovered]:
    """The datasets of a ``kind`` system at ``location``."""
    discoverer: Discoverer = _load(_DISCOVERERS, kind, "discover")
    return discoverer(location, options, env)


def analyze(
    kind: str,
    location: str,
    options: Mapping[str, Any],
    name: str,
    env: Mapping[str, str] | None = None,
) -> Measured:
    """Measure dataset ``name`` of a ``kind`` system."""
    analyzer: Analyzer = _load(_ANALYZERS, kind, "analyze")
    return analyzer(location, options, name, env)


def summarize(con: duckdb.DuckDBPyConnection, relation: str, source: str) -> Measured:
    """Statistics of a DuckDB relation by one ``SUMMARIZE`` pass (HyperLogLog distincts)."""
    try:
        rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
        summary = con.execute(f"SUMMARIZE SELECT * FROM {relation}").fetchall()
    except duckdb.Error as exc:
        raise EngineError(f"duckdb: cannot analyze {relation}: {exc}", engine="duckdb") from exc
    count = int(rows[0]) if rows else 0
    columns = []
    for name, kind, low, high, approx, *rest in summary:
        null_percentage = rest[-1]
        nulls = None if null_percentage is None else round(float(null_percentage) * count / 100)
        columns.append(
            ColumnStats(
                column=name,
                distinct=None if approx is None else min(int(approx), count),
                nulls=nulls,
                minimum=_scalar(low, kind),
                maximum=_scalar(high, kind),
                source=source,
            )
        )
    return Measured(rows=count, size_bytes=None, source=source, columns=tuple(columns))


def _scalar(value: Any, kind: str) -> Any:
    """SUMMARIZE's min/max (text) as a number when the column is numeric."""
    if value is None:
        return None
    upper = str(kind).upper()
    numeric = ("INT", "DECIMAL", "DOUBLE", "FLOAT", "REAL", "NUMERIC", "HUGEINT")
    if any(upper.startswith(k) or k in upper for k in numeric):
        try:
            return float(value)
        except ValueError:
            return None
    text = str(value)
    return text if len(text) <= 200 else None


# Parquet folders -----------------------------------------------------------------------


def discover_lake(
    location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[Discovered]:
    found = []
    for name, files in discover_parquet(location):
        rows, size = 0, 0
        stats: dict[str, list[Any]] = {}
        schema: pa.Schema | None = None
        for path in files:
            meta = pq.read_metadata(path)
            schema = schema or meta.schema.to_arrow_schema()
            rows += meta.num_rows
            size += Path(path).stat().st_size
            _merge_row_group_stats(meta, stats)
        assert schema is not None
        columns = tuple(Column(f.name, sql_type(f.type), f.nullable) for f in schema)
        column_stats = tuple(
            ColumnStats(
                column=name_,
                nulls=values[0],
                minimum=values[1],
                maximum=values[2],
                source="parquet metadata",
            )
            for name_, values in stats.items()
        )
        found.append(
            Discovered(name, "fileset", columns, rows, size, "parquet metadata", column_stats)
        )
    return found


def _merge_row_group_stats(meta: pq.FileMetaData, stats: dict[str, list[Any]]) -> None:
    """Fold each row group's null count, min and max into ``stats`` (per top-level column)."""
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            path = chunk.path_in_schema
            if "." in path:
                continue
            current = stats.setdefault(path, [0, None, None])
            column = chunk.statistics
            if column is None or not column.has_min_max:
                current[0] = None if column is None else current[0]
                continue
            if current[0] is not None and column.null_count is not None:
                current[0] += column.null_count
            low, high = _plain(column.min), _plain(column.max)
            if low is not None and (current[1] is None or _less(low, current[1])):
                current[1] = low
            if high is not None and (current[2] is None or _less(current[2], high)):
                current[2] = high


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, int | float | str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _less(left: Any, right: Any) -> bool:
    try:
        return bool(left < right)
    except TypeError:
        return False


def analyze_lake(
    location: str, options: Mapping[str, Any], name: str, env: Mapping[str, str] | None = None
) -> Measured:
    files = parquet_files(location, name)
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    with duckdb.connect() as con:
        measured = summarize(con, f"read_parquet([{listing}])", "analyze")
    size = sum(Path(f).stat().st_size for f in files)
    return Measured(measured.rows, size, measured.source, measured.columns)


# DuckDB database files -----------------------------------------------------------------


def _open_duckdb(location: str) -> duckdb.DuckDBPyConnection:
    if not Path(location).is_file():
        raise EngineError(f"duckdb database {location} does not exist", engine="duckdb")
    try:
        return duckdb.connect(location, read_only=True)
    except duckdb.Error as exc:
        raise EngineError(
            f"duckdb: cannot open {location}: {exc}", engine="duckdb", retryable=True
        ) from exc


def discover_duckdb(
    location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[Discovered]:
    with _open_duckdb(location) as con:
        tables = con.execute(
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() "
            "WHERE NOT internal ORDER BY 1, 2"
        ).fetchall()
        views = con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
            "AND schema_name NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"
        ).fetchall()
        columns = con.execute(
            "SELECT schema_name, table_name, column_name, data_type, is_nullable "
            "FROM duckdb_columns() WHERE NOT internal ORDER BY schema_name, table_name, "
            "column_index"
        ).fetchall()
    by_table: dict[tuple[str, str], list[Column]] = {}
    for schema, table, column, kind, nullable in columns:
        by_table.setdefault((schema, table), []).append(Column(column, kind, bool(nullable)))
    found = [
        Discovered(
            f"{schema}.{table}",
            "table",
            tuple(by_table.get((schema, table), ())),
            int(size) if size is not None else None,
            None,
            "duckdb estimated_size",
        )
        for schema, table, size in tables
    ]
    found += [
        Discovered(
            f"{schema}.{view}", "view", tuple(by_table.get((schema, view), ())), None, None, "none"
        )
        for schema, view in views
    ]
    return found


def analyze_duckdb(
    location: str, options: Mapping[str, Any], name: str, env: Mapping[str, str] | None = None
) -> Measured:
    schema, _, table = name.rpartition(".")
    with _open_duckdb(location) as con:
        return summarize(con, f'"{schema or "main"}"."{table}"', "analyze")
