"""The ``postgres`` sink: topics into PostgreSQL tables, exactly once.

Example ``trunkline.yaml`` entry::

    sinks:
      replica:
        type: postgres
        dsn: ${REPLICA_DSN}           # postgresql://user:password@host:5432/analytics
        db_schema: public
        topics: [shop.public.orders]
        mode: upsert                  # or append
        key: [id]

Each batch is one transaction: the rows, and the offsets they came from (table
``_trunkline_offsets`` of ``db_schema``); after a restart the sink resumes from those
offsets, so no record is applied twice and none is skipped. A worker thread runs batch N's
transaction while :meth:`PostgresSink.write_batch` decodes batch N+1, so PostgreSQL and the
decoding work at the same time (see :class:`~trunkline.connectors.sinks._tables.DatabaseSink`).

Rows reach PostgreSQL by ``COPY ... FROM STDIN`` (CSV written by Arrow, not row by row).
Append mode copies straight into the table. Upsert mode copies into a staging table (a
temporary table emptied at each commit) and merges: deletes of the keys whose last change
deletes them, then ``INSERT ... ON CONFLICT (key) DO UPDATE`` of the others. Changes are
read and collapsed to the last one per key by the same code as the other table sinks
(:mod:`trunkline.connectors.sinks._changes`): plain JSON rows, tombstones and Debezium
envelopes (``c``/``r``/``u`` upsert, ``d`` deletes, ``t`` empties the table), and a
Debezium placeholder for an unchanged TOASTed value keeps the value the row has.

Tables are created from the records (Arrow types to PostgreSQL types, a primary key in
upsert mode); a field seen for the first time becomes a new column; an integer column that
receives decimals becomes ``double precision``. A value that does not fit its column goes
to the dead-letter topic; a column whose values no longer fit at all (the data changed
type) stops the sink with :class:`~trunkline.errors.IncompatibleChange`. Identifiers are
quoted with psycopg's :mod:`psycopg.sql`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from typing import Any, ClassVar

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql
from pydantic import Field, SecretStr

from trunkline.config import Duration
from trunkline.connectors.base import Capabilities, ConnectorContext
from trunkline.connectors.sinks._changes import OP, SEQ, collapse
from trunkline.connectors.sinks._pgtypes import (
    Fit,
    column_type,
    duckdb_type,
    fit,
    is_array,
    staged_type,
)
from trunkline.connectors.sinks._tables import DatabaseSink, DatabaseSinkSettings
from trunkline.errors import ConnectorError, IncompatibleChange, TargetUnavailable
from trunkline.hub import FetchedBatch, TopicPartition

__all__ = ["PostgresSink", "PostgresSinkConfig"]

OFFSETS_TABLE = "_trunkline_offsets"
_CSV = pcsv.WriteOptions(include_header=False)


class PostgresSinkConfig(DatabaseSinkSettings):
    """Settings of the ``postgres`` sink."""

    dsn: SecretStr = Field(
        description="The database, as a libpq URL or key=value string "
        "(postgresql://user:password@host:5432/db); use ${VAR} for the password."
    )
    db_schema: str = Field(
        "public", min_length=1, description="The schema the tables (and the offsets) go in."
    )
    connect_timeout: Duration = Field(10_000, description="How long to wait for a connection.")


def _translate(exc: psycopg.Error, doing: str) -> ConnectorError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.SerializationFailure):
        return TargetUnavailable(f"{doing}: {text}")
    return ConnectorError(f"{doing}: {text}", retryable=False)


class PostgresSink(DatabaseSink):
    """Copies topics into PostgreSQL tables, with offsets in the same transaction."""

    Config: ClassVar[type[PostgresSinkConfig]] = PostgresSinkConfig
    # Several processes may share the partitions: PostgreSQL serialises their transactions.
    capabilities: ClassVar[Capabilities] = Capabilities(exactly_once=True, upsert=True)
    config: PostgresSinkConfig

    def __init__(self, name: str, config: PostgresSinkConfig) -> None:
        super().__init__(name, config)
        self._conn: psycopg.Connection | None = None
        self._stages: dict[tuple[str, ...], str] = {}

    # -- lifecycle --------------------------------------------------------------------

    def open(self, context: ConnectorContext) -> None:
        self._context = context
        self._start_worker()
        try:
            self._conn = psycopg.connect(
                self.config.dsn.get_secret_value(),
                autocommit=True,
                connect_timeout=max(1, round(self.config.connect_timeout / 1000)),
                application_name=f"trunkline {self.name}",
            )
            conn = self._conn
            conn.execute("SET TimeZone = 'UTC'")
            schema = sql.Identifier(self.config.db_schema)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (sink text, topic text, partition integer, "
                    "next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
                    "PRIMARY KEY (sink, topic, partition))"
                ).format(self._offsets())
            )
        except psycopg.Error as exc:
            self.close()
            raise _translate(exc, f"cannot open PostgreSQL sink {self.name!r}") from exc
        info = self._conn.info
        context.register_system("postgres", f"postgresql://{info.host}:{info.port}/{info.dbname}")

    def close(self) -> None:
        self._stop_worker()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                conn.close()
        self._columns = {}
        self._stages = {}

    def _connection(self) -> psycopg.Connection:
        if self._conn is None:
            raise ConnectorError(f"the postgres sink {self.name!r} is not open", retryable=True)
        return self._conn

    def _offsets(self) -> sql.Identifier:
        return sql.Identifier(self.config.db_schema, OFFSETS_TABLE)

    def assign(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        self._wait()
        try:
            rows = (
                self._connection()
                .execute(
                    sql.SQL("SELECT topic, partition, next_offset FROM {} WHERE sink = %s").format(
                        self._offsets()
                    ),
                    [self.name],
                )
                .fetchall()
            )
        except psycopg.Error as exc:
            raise _translate(exc, "reading the stored offsets") from exc
        stored = {TopicPartition(t, int(p)): int(o) for t, p, o in rows}
        return {tp: stored[tp] for tp in partitions if tp in stored}

    # -- writing ----------------------------------------------------------------------

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        self._connection()
        # Decoding happens here while the worker still applies the previous batch.
        rows, bad = self._changes(batch)
        self._submit(self._commit, topic, batch, rows, bad)

    def _commit(
        self, topic: str, batch: FetchedBatch, rows: pa.Table, bad: list[tuple[int, str]]
    ) -> None:
        """One transaction: the rows, their dead letters, and the offset after them."""
        conn = self._connection()
        upsert = self.config.mode == "upsert"
        table = self.config.table_for(topic)
        started = time.perf_counter()
        try:
            with conn.transaction():
                if rows.num_rows:
                    bad += self._apply(conn, topic, table, rows, upsert)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (sink, topic, partition, next_offset) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (sink, topic, partition) DO UPDATE "
                        "SET next_offset = EXCLUDED.next_offset, updated_at = now()"
                    ).format(self._offsets()),
                    [self.name, batch.topic, batch.partition, batch.next_offset],
                )
                if bad:
                    self._dead_letter(batch, topic, bad)
        except psycopg.Error as exc:
            self._columns.pop(table, None)  # what the table looks like is known again after
            raise _translate(exc, f"writing {topic}[{batch.partition}] to {table}") from exc
        elapsed = time.perf_counter() - started
        self._applied(TopicPartition(batch.topic, batch.partition), batch.next_offset, elapsed)

    def _apply(
        self, conn: psycopg.Connection, topic: str, table: str, rows: pa.Table, upsert: bool
    ) -> list[tuple[int, str]]:
        """Write the changes of one batch into ``table``; returns rows that did not fit."""
        rows = rows.select([f.name for f in rows.schema if not pa.types.is_null(f.type)])
        key = self.config.key if upsert else ()
        bad: list[tuple[int, str]] = []
        if key:
            rows, missing = _require_keys(rows, key, topic)
            bad += missing
        data = [c for c in rows.column_names if c not in (SEQ, OP)]
        columns = self._table_columns(conn, table)
        if columns is None:
            if not pc.any(pc.equal(rows.column(OP), "u")).as_py():
                return bad  # only deletes, and no table to delete from
            columns = self._create(conn, table, rows, data, key)
        rows, unfit = self._fit(conn, topic, table, columns, rows, data)
        bad += unfit
        data = [c for c in rows.column_names if c not in (SEQ, OP)]
        if upsert:
            self._upsert(conn, table, columns, rows, data, key)
        else:
            self._append(conn, table, columns, rows, data)
        self._link(topic, table)
        return bad

    # -- tables -----------------------------------------------------------------------

    def _target(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.config.db_schema, table)

    def _table_columns(self, conn: psycopg.Connection, table: str) -> dict[str, str] | None:
        if table in self._columns:
            return self._columns[table]
        found = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [self.config.db_schema, table],
        ).fetchall()
        if not found:
            return None
        self._columns[table] = dict(found)
        return self._columns[table]

    def _create(
        self,
        conn: psycopg.Connection,
        table: str,
        rows: pa.Table,
        data: list[str],
        key: tuple[str, ...],
    ) -> dict[str, str]:
        columns = {
            c: kind
            for c in data
            if (kind := column_type(rows.schema.field(c).type)) is not None or c in key
        }
        defs = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(c),
                sql.SQL(kind or "text"),
                sql.SQL(" NOT NULL" if c in key else ""),
            )
            for c, kind in columns.items()
        ]
        if key:
            defs.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
            )
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                self._target(table), sql.SQL(", ").join(defs)
            )
        )
        self._columns.pop(table, None)
        created = self._table_columns(conn, table) or {}
        self._register(table, created)
        return created

    def _fit(
        self,
        conn: psycopg.Connection,
        topic: str,
        table: str,
        columns: dict[str, str],
        rows: pa.Table,
        data: list[str],
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        """Add new columns, widen integer columns that receive decimals, cast what goes in
        as text, check text for typed columns; returns the rows that fit and the others."""
        bad: list[tuple[int, str]] = []
        changed = False
        for name in data:
            kind = rows.schema.field(name).type
            target = self._target(table)
            if name not in columns:
                new_type = column_type(kind)
                if new_type is None:
                    continue
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        target, sql.Identifier(name), sql.SQL(new_type)
                    )
                )
                columns[name] = new_type
                changed = True
                continue
            how = fit(kind, columns[name])
            if how is Fit.WIDEN and name not in self.config.key:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE double precision").format(
                        target, sql.Identifier(name)
                    )
                )
                columns[name] = "double precision"
                changed = True
            elif how is Fit.TEXT:
                rows = _set(rows, name, _as_text(rows.column(name)))
            elif how is Fit.CHECK or how is Fit.WIDEN:
                rows, failed = _check(rows, name, columns[name], topic, table)
                bad += failed
            elif how is Fit.NO:
                raise IncompatibleChange(
                    f"column {name!r} of table {self.config.db_schema}.{table} is "
                    f"{columns[name]}, but the records of topic {topic!r} now hold {kind} "
                    "values; change the table (or the data) and restart the sink"
                )
        if changed:
            self._register(table, columns)
        return rows, bad

    # -- COPY and merge ---------------------------------------------------------------

    def _copy(
        self, conn: psycopg.Connection, target: sql.Composable, names: list[str], values: pa.Table
    ) -> None:
        """``COPY target (names) FROM STDIN`` of ``values`` as CSV, written by Arrow."""
        sink = pa.BufferOutputStream()
        pcsv.write_csv(values, sink, _CSV)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(sink.getvalue())

    def _stage(
        self,
        conn: psycopg.Connection,
        table: str,
        columns: dict[str, str],
        names: list[str],
        flags: list[str],
    ) -> sql.Identifier:
        """A temporary table for staged rows of this shape (emptied at each commit)."""
        shape = (table, *names, "|", *flags)
        name = self._stages.get(shape)
        if name is None:
            name = f"_trunkline_stage_{len(self._stages)}"
            defs = [
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(staged_type(columns[c])))
                for c in names
            ] + [sql.SQL("{} boolean").format(sql.Identifier(f)) for f in flags]
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DELETE ROWS").format(
                    sql.Identifier(name), sql.SQL(", ").join(defs)
                )
            )
            self._stages[shape] = name
        return sql.Identifier(name)

    def _append(
        self,
        conn: psycopg.Connection,
        table: str,
        columns: dict[str, str],
        rows: pa.Table,
        data: list[str],
    ) -> None:
        names = [c for c in data if c in columns]
        values = _csv_ready(rows.select(names), columns)
        arrays = [c for c in names if is_array(columns[c])]
        if not arrays:
            self._copy(conn, self._target(table), names, values)
            return
        stage = self._stage(conn, table, columns, names, [])
        self._copy(conn, stage, names, values)
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s").format(
                self._target(table),
                sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(_from_stage(c, columns[c]) for c in names),
                stage,
            )
        )

    def _upsert(
        self,
        conn: psycopg.Connection,
        table: str,
        columns: dict[str, str],
        rows: pa.Table,
        data: list[str],
        key: tuple[str, ...],
    ) -> None:
        target = self._target(table)
        net = collapse(rows, key)
        if net.truncated:
            conn.execute(sql.SQL("DELETE FROM {}").format(target))
        gone = _deleted_keys(net.touched, net.rows, key)
        if gone is not None and gone.num_rows:
            keys = [[None if v is None else str(v) for v in _key_text(gone.column(k))] for k in key]
            on = sql.SQL(" AND ").join(
                sql.SQL("t.{0} = d.{0}").format(sql.Identifier(k)) for k in key
            )
            typed = sql.SQL(", ").join(
                sql.SQL("u.{}::{} AS {}").format(
                    sql.Identifier(f"k{i}"), sql.SQL(columns[k]), sql.Identifier(k)
                )
                for i, k in enumerate(key)
            )
            arrays = sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in key)
            aliases = sql.SQL(", ").join(sql.Identifier(f"k{i}") for i in range(len(key)))
            conn.execute(
                sql.SQL(
                    "DELETE FROM {} t USING (SELECT {} FROM unnest({}) AS u({})) d WHERE {}"
                ).format(target, typed, arrays, aliases, on),
                keys,
            )
        present = net.rows
        if not present.num_rows:
            return
        names = [c for c in present.column_names if c in columns]
        missing = {c: m for c, m in (net.missing or {}).items() if c in names and pc.any(m).as_py()}
        flags = [f"__missing_{names.index(c)}" for c in missing]
        values = _csv_ready(present.select(names), columns)
        for flag, mask in zip(flags, missing.values(), strict=True):
            values = values.append_column(flag, mask)
        stage = self._stage(conn, table, columns, names, flags)
        self._copy(conn, stage, names + flags, values)
        others = [c for c in names if c not in key]
        q = sql.Identifier
        if not missing:
            update = (
                sql.SQL("DO UPDATE SET {}").format(
                    sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(q(c)) for c in others)
                )
                if others
                else sql.SQL("DO NOTHING")
            )
            try:
                conn.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s ON CONFLICT ({}) {}").format(
                        target,
                        sql.SQL(", ").join(map(q, names)),
                        sql.SQL(", ").join(_from_stage(c, columns[c]) for c in names),
                        stage,
                        sql.SQL(", ").join(map(q, key)),
                        update,
                    )
                )
            except psycopg.errors.InvalidColumnReference as exc:
                raise IncompatibleChange(
                    f"mode upsert needs a primary key or unique index on ({', '.join(key)}) of "
                    f"table {self.config.db_schema}.{table}; add one and restart the sink"
                ) from exc
            return
        # Some values are Debezium's placeholder for an unchanged TOASTed value: the row
        # keeps what it has there (a row new to the table gets NULL).
        flag_of = dict(zip(missing, flags, strict=True))
        on = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(q(k)) for k in key)
        sets = []
        for c in others:
            value = _from_stage(c, columns[c])
            if c in flag_of:
                value = sql.SQL("CASE WHEN s.{} THEN t.{} ELSE {} END").format(
                    q(flag_of[c]), q(c), value
                )
            sets.append(sql.SQL("{} = {}").format(q(c), value))
        if sets:
            conn.execute(
                sql.SQL("UPDATE {} t SET {} FROM {} s WHERE {}").format(
                    target, sql.SQL(", ").join(sets), stage, on
                )
            )
        inserted = [
            _from_stage(c, columns[c])
            if c not in flag_of
            else sql.SQL("CASE WHEN s.{} THEN NULL ELSE {} END").format(
                q(flag_of[c]), _from_stage(c, columns[c])
            )
            for c in names
        ]
        conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} s WHERE NOT EXISTS (SELECT 1 FROM {} t "
                "WHERE {})"
            ).format(
                target,
                sql.SQL(", ").join(map(q, names)),
                sql.SQL(", ").join(inserted),
                stage,
                target,
                on,
            )
        )


# -- helpers ---------------------------------------------------------------------------


def _set(rows: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = rows.column_names.index(name)
    return rows.set_column(i, pa.field(name, values.type), values)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values as text: JSON for lists and structs, else Arrow's cast."""
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        con = duckdb.connect()
        try:
            con.register("c", pa.table({"c": column}))
            text = con.sql("SELECT CAST(to_json(c) AS VARCHAR) AS c FROM c").to_arrow_table()
            return text.column(0)
        finally:
            con.close()
    return column.cast(pa.string())


def _csv_ready(values: pa.Table, columns: dict[str, str]) -> pa.Table:
    """Columns that CSV cannot hold as they are (lists, structs), as JSON text."""
    for field in values.schema:
        kind = field.type
        if pa.types.is_nested(kind) or (
            is_array(columns.get(field.name, "")) and not pa.types.is_string(kind)
        ):
            values = _set(values, field.name, _as_text(values.column(field.name)))
    return values


def _from_stage(name: str, pg_type: str) -> sql.Composable:
    """A staged column as the target's type (arrays travel as JSON arrays)."""
    column = sql.SQL("s.{}").format(sql.Identifier(name))
    if not is_array(pg_type):
        return column
    return sql.SQL(
        "CASE WHEN jsonb_typeof({0}) = 'array' "
        "THEN ARRAY(SELECT jsonb_array_elements_text({0}))::{1} END"
    ).format(column, sql.SQL(pg_type))


def _key_text(column: pa.ChunkedArray) -> list[Any]:
    kind = column.type
    if pa.types.is_timestamp(kind):
        column = pc.strftime(column, "%Y-%m-%dT%H:%M:%S.%f" + ("%z" if kind.tz else ""))
    return list(column.to_pylist())


def _deleted_keys(touched: pa.Table, present: pa.Table, key: tuple[str, ...]) -> pa.Table | None:
    """Keys whose last change deletes them: touched, and not among the present rows."""
    if not touched.num_rows:
        return None
    con = duckdb.connect()
    try:
        con.register("touched", touched.select(list(key)))
        con.register("present", present.select(list(key)))
        return con.sql("SELECT * FROM touched EXCEPT SELECT * FROM present").to_arrow_table()
    finally:
        con.close()


def _require_keys(
    rows: pa.Table, key: tuple[str, ...], topic: str
) -> tuple[pa.Table, list[tuple[int, str]]]:
    absent = [k for k in key if k not in rows.column_names]
    if absent:
        if pc.any(pc.equal(rows.column(OP), "u")).as_py():
            fields = ", ".join(c for c in rows.column_names if c not in (SEQ, OP))
            raise IncompatibleChange(
                f"mode upsert with key {list(key)}, but the records of topic {topic!r} have "
                f"no field {absent[0]!r}; their fields: {fields or 'none'}"
            )
        return rows.slice(0, 0), [
            (int(s), f"no key column {absent[0]!r}") for s in rows.column(SEQ).to_pylist()
        ]
    missing = pc.is_null(rows.column(key[0]))
    for k in key[1:]:
        missing = pc.or_(missing, pc.is_null(rows.column(k)))
    missing = pc.and_(missing, pc.invert(pc.equal(rows.column(OP), "t")))
    if not pc.any(missing).as_py():
        return rows, []
    seqs = pc.filter(rows.column(SEQ), missing).to_pylist()
    error = f"a value for each key column ({', '.join(key)}) is needed, found null"
    return rows.filter(pc.invert(missing)), [(int(s), error) for s in seqs]


def _check(
    rows: pa.Table, name: str, pg_type: str, topic: str, table: str
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Rows whose value of ``name`` does not parse as ``pg_type`` (checked by DuckDB where
    it knows the type; PostgreSQL has the last word on the others)."""
    duck = duckdb_type(pg_type)
    if duck is None:
        return rows, []
    # ``duck`` is one of our own type names: nothing from data reaches the SQL.
    fails = f"v IS NOT NULL AND TRY_CAST(v AS {duck}) IS NULL"
    con = duckdb.connect()
    try:
        con.register("r", pa.table({"v": rows.column(name), "s": rows.column(SEQ)}))
        counted = con.sql(f"SELECT count(v), count(*) FILTER (WHERE {fails}) FROM r")  # noqa: S608
        present, failed = counted.fetchone() or (0, 0)
        if not failed:
            return rows, []
        if failed == present:
            raise IncompatibleChange(
                f"column {name!r} of table {table!r} is {pg_type}, but the records of topic "
                f"{topic!r} now hold values that are not; change the table (or the data) and "
                "restart the sink"
            )
        seqs = [
            int(s)
            for (s,) in con.sql(f"SELECT s FROM r WHERE {fails}").fetchall()  # noqa: S608
        ]
    finally:
        con.close()
    keep = pc.invert(pc.is_in(rows.column(SEQ), pa.array(seqs, pa.int64())))
    errors = [(s, f"column {name!r}: the value is not a {pg_type}") for s in seqs]
    return rows.filter(keep), errors
