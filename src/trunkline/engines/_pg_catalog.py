"""A PostgreSQL database's tables, columns and statistics, read from its own catalog.

Row estimates come from ``pg_class.reltuples`` and sizes from ``pg_total_relation_size``;
per-column statistics from ``pg_stats`` (what ``ANALYZE`` gathered: distinct count, null
fraction, histogram bounds for min and max). ``analyze`` runs ``ANALYZE`` on the table first
when the connection may, so the figures are fresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trunkline.engines._discover import Discovered, Measured
from trunkline.engines.postgres import connect_dsn, redact
from trunkline.errors import EngineError, MissingDependency
from trunkline.meta import Column, ColumnStats

_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint,
       pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT c.relispartition
ORDER BY n.nspname, c.relname
"""
_COLUMNS = """
SELECT attrelid, attname, format_type(atttypid, atttypmod), NOT attnotnull
FROM pg_attribute WHERE attrelid = ANY(%s) AND attnum > 0 AND NOT attisdropped
ORDER BY attrelid, attnum
"""
_STATS = """
SELECT schemaname, tablename, attname, null_frac, n_distinct, avg_width,
       (histogram_bounds::text::text[])[1],
       (histogram_bounds::text::text[])[array_length(histogram_bounds::text::text[], 1)]
FROM pg_stats WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
"""


def _connect(location: str, options: Mapping[str, Any], env: Mapping[str, str] | None) -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependency("psycopg", extra="postgres") from None
    dsn = connect_dsn(location, options, env)
    try:
        return psycopg.connect(dsn, connect_timeout=10, application_name="trunkline-catalog")
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        raise EngineError(
            f"postgres {redact(location)}: cannot connect: {message}",
            engine="postgres",
            retryable=True,
        ) from exc


def _column_stats(
    rows: list[tuple[Any, ...]], reltuples: dict[tuple[str, str], int]
) -> dict[tuple[str, str], list[ColumnStats]]:
    found: dict[tuple[str, str], list[ColumnStats]] = {}
    for schema, table, column, null_frac, n_distinct, avg_width, low, high in rows:
        total = max(reltuples.get((schema, table), 0), 0)
        if n_distinct is None:
            distinct = None
        elif n_distinct < 0:  # a fraction of the rows, as PostgreSQL writes it
            distinct = round(-float(n_distinct) * total)
        else:
            distinct = int(n_distinct)
        found.setdefault((schema, table), []).append(
            ColumnStats(
                column=column,
                distinct=distinct,
                nulls=None if null_frac is None else round(float(null_frac) * total),
                minimum=_number_or_text(low),
                maximum=_number_or_text(high),
                avg_width=None if avg_width is None else float(avg_width),
                source="pg_stats",
            )
        )
    return found


def _number_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value if len(value) <= 200 else None


def discover(
    location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[Discovered]:
    with _connect(location, options, env) as conn:
        tables = conn.execute(_TABLES).fetchall()
        oids = [row[0] for row in tables]
        columns: dict[int, list[Column]] = {}
        for oid, name, kind, nullable in conn.execute(_COLUMNS, (oids,)).fetchall():
            columns.setdefault(oid, []).append(Column(name, kind, bool(nullable)))
        reltuples = {(row[1], row[2]): int(row[4]) for row in tables}
        stats = _column_stats(conn.execute(_STATS).fetchall(), reltuples)
    found = []
    for oid, schema, table, kind, rows, size in tables:
        known = rows is not None and rows >= 0
        found.append(
            Discovered(
                name=f"{schema}.{table}",
                kind="view" if kind == "v" else "table",
                columns=tuple(columns.get(oid, ())),
                # reltuples is -1 until the table is first analyzed or vacuumed.
                rows=int(rows) if known else None,
                size_bytes=int(size) if size is not None else None,
                stats_source="pg_class.reltuples" if known else "none",
                column_stats=tuple(stats.get((schema, table), ())),
            )
        )
    return found


def analyze(
    location: str,
    options: Mapping[str, Any],
    name: str,
    env: Mapping[str, str] | None = None,
) -> Measured:
    import psycopg
    from psycopg import sql

    schema, _, table = name.rpartition(".")
    schema = schema or "public"
    with _connect(location, options, env) as conn:
        conn.autocommit = True
        try:
            conn.execute(
                sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )
            source = "pg_stats (ANALYZE)"
        except psycopg.errors.InsufficientPrivilege:
            source = "pg_stats"
        row = conn.execute(
            "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
            "c.relname = %s",
            (schema, table),
        ).fetchone()
        if row is None:
            raise EngineError(f"postgres: table {name} does not exist", engine="postgres")
        rows = max(int(row[0]), 0)
        stats_rows = conn.execute(
            _STATS + " AND schemaname = %s AND tablename = %s", (schema, table)
        ).fetchall()
    columns = _column_stats(stats_rows, {(schema, table): rows}).get((schema, table), [])
    return Measured(rows=rows, size_bytes=int(row[1]), source=source, columns=tuple(columns))
