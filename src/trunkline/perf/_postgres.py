"""PostgreSQL pieces the benchmarks share: a scratch database, and COPY as a baseline."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = ["PG_SCHEMAS", "PG_SINKS", "copy_seconds", "drop_schemas", "scratch_database"]

#: The ``postgres`` sinks ``trunkline perf sink`` adds when given a server.
PG_SINKS = """\
  pg:
    type: postgres
    dsn: ${TRUNKLINE_PERF_PG_DSN}
    db_schema: append_sink
    topics: [bench]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
  pg_upsert:
    type: postgres
    dsn: ${TRUNKLINE_PERF_PG_DSN}
    db_schema: upsert_sink
    topics: [bench]
    mode: upsert
    key: [order_id]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
"""


#: The schemas of :data:`PG_SINKS`, with the offsets those sinks keep.
PG_SCHEMAS = ("append_sink", "upsert_sink")


def drop_schemas(dsn: str, schemas: tuple[str, ...] = PG_SCHEMAS) -> None:
    """Drop ``schemas`` (tables and the sinks' offsets in them) before a new round: a new
    hub starts its topics at offset 0 again, and a sink that found its old offsets there
    would skip every record."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def scratch_database(dsn: str) -> Iterator[str]:
    """A new database on the server of ``dsn`` for one benchmark; dropped afterwards
    (with the replication slots left on it)."""
    name = f"trunkline_perf_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    scratch = make_conninfo(dsn, dbname=name)
    try:
        yield scratch
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for _ in range(100):
                slots = admin.execute(
                    "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                    [name],
                ).fetchall()
                if not slots:
                    break
                for slot, pid in slots:
                    with contextlib.suppress(psycopg.Error):
                        if pid is not None:
                            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                        else:
                            admin.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                time.sleep(0.1)
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def copy_seconds(dsn: str, typed: pa.Table, schema: str) -> float:
    """PostgreSQL's own COPY of ``typed`` (as CSV written by Arrow) into a new table with the
    same columns, in one transaction: the baseline of the ``postgres`` sink."""
    columns = {
        "order_id": "text",
        "customer_id": "text",
        "amount": "double precision",
        "currency": "text",
        "status": "text",
        "ts": "timestamptz",
    }
    table = sql.Identifier(schema, "orders")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                table,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in columns.items()
                ),
            )
        )
        started = time.perf_counter()
        sink = pa.BufferOutputStream()
        pcsv.write_csv(typed.select(list(columns)), sink, pcsv.WriteOptions(include_header=False))
        with conn.transaction(), conn.cursor() as cursor:
            statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(table)
            with cursor.copy(statement) as copy:
                copy.write(sink.getvalue())
        return time.perf_counter() - started
