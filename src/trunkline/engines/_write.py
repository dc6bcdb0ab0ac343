"""Writing a result into a target dataset, all or nothing, dispatched by system kind.

Each writer replaces the target table in one transaction (or one rename), so a failed flow
never leaves half a result: DuckDB ``CREATE OR REPLACE TABLE`` in a transaction; PostgreSQL
loads a staging table through ADBC (COPY) and swaps it in with the old one dropped, in one
transaction; Parquet writes a temporary file and renames it over the old one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from trunkline.errors import ConfigError, EngineError, MissingDependency

Writer = Callable[[str, Mapping[str, Any], str, pa.Table, Mapping[str, str] | None], None]


def _split(name: str, default: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return schema or default, table


def write_duckdb(
    location: str, options: Mapping[str, Any], name: str, table: pa.Table, env: Any = None
) -> None:
    schema, target = _split(name, "main")
    try:
        with duckdb.connect(location) as con:
            con.register("_result", table)
            con.execute("BEGIN")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{target}" AS SELECT * FROM _result')
            con.execute("COMMIT")
    except duckdb.Error as exc:
        raise EngineError(
            f"duckdb: writing {name} into {location} failed: {exc}", engine="duckdb"
        ) from exc


def write_parquet(
    location: str, options: Mapping[str, Any], name: str, table: pa.Table, env: Any = None
) -> None:
    path = Path(location) / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        pq.write_table(table, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def write_postgres(
    location: str,
    options: Mapping[str, Any],
    name: str,
    table: pa.Table,
    env: Mapping[str, str] | None = None,
) -> None:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        raise MissingDependency("adbc-driver-postgresql", extra="postgres") from None
    from trunkline.engines.postgres import connect_dsn

    schema, target = _split(name, "public")
    staging = f"_trunkline_{uuid.uuid4().hex[:12]}"
    quoted = f'"{schema}"."{target}"'
    try:
        with adbc.connect(connect_dsn(location, options, env)) as conn:
            cursor = conn.cursor()
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cursor.adbc_ingest(staging, table, mode="create", db_schema_name=schema)
            cursor.execute(f"DROP TABLE IF EXISTS {quoted}")
            cursor.execute(f'ALTER TABLE "{schema}"."{staging}" RENAME TO "{target}"')
            conn.commit()  # the swap and the load are one transaction
    except Exception as exc:
        raise EngineError(f"postgres: writing {name} failed: {exc}", engine="postgres") from exc


WRITERS: dict[str, Writer] = {
    "duckdb": write_duckdb,
    "parquet": write_parquet,
    "postgres": write_postgres,
}


def write(
    kind: str,
    location: str,
    options: Mapping[str, Any],
    name: str,
    table: pa.Table,
    env: Mapping[str, str] | None = None,
) -> None:
    """Replace dataset ``name`` of a ``kind`` system with ``table``."""
    writer = WRITERS.get(kind)
    if writer is None:
        raise ConfigError(
            f"flows cannot write into {kind!r} systems; they can into {', '.join(sorted(WRITERS))} "
            "and hub topics"
        )
    writer(location, options, name, table, env)
