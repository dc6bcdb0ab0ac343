# ruff: noqa: S608  - SQL here is built from names that all pass through quote_identifier.
"""The ``duckdb`` sink: topics into tables of a DuckDB file, exactly once.

Example ``trunkline.yaml`` entry::

    sinks:
      warehouse:
        type: duckdb
        path: warehouse.duckdb
        topics: [shop.public.orders]
        mode: upsert          # or append
        key: [id]             # upsert: the primary key

Each batch is one transaction holding the rows *and* the offsets they came from (table
``_trunkline_offsets``); after a restart the sink resumes from those offsets, so no record
is applied twice and none is skipped (exactly-once). A worker thread applies batch N while
:meth:`DuckDBSink.write_batch` decodes batch N+1 (JSON to Arrow), so both cores work; an
error of batch N surfaces at the next ``write_batch`` or ``snapshot``, the runtime restarts
the sink, and it resumes from the offsets in the table.

Tables are created from the first records (JSON values decoded to Arrow), with a primary
key in upsert mode; a field seen for the first time becomes a new column; an integer column
that receives decimals is widened. A value that does not fit its column goes to the
dead-letter topic; a column whose every value in a batch no longer fits (the data changed
type) stops the sink with :class:`~trunkline.errors.IncompatibleChange`.

Upserts apply, per key, the last change in the batch: deletes delete (tombstones, Debezium
``d``), ``t`` empties the table, and a Debezium placeholder for an unchanged TOASTed value
keeps the value the row had.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import ClassVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from trunkline.connectors._sql import qualified, quote_identifier, quote_literal
from trunkline.connectors.base import Capabilities, ConnectorContext
from trunkline.connectors.sinks._changes import OP, SEQ, UNAVAILABLE
from trunkline.connectors.sinks._tables import DatabaseSink, DatabaseSinkSettings, table_name
from trunkline.errors import ConnectorError, IncompatibleChange, TargetUnavailable
from trunkline.hub import FetchedBatch, TopicPartition

__all__ = ["DuckDBSink", "table_name"]

OFFSETS_TABLE = "_trunkline_offsets"
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_FLOATS = ("FLOAT", "DOUBLE")
#: Rows per row group of a DuckDB table (DuckDB's default ``ROW_GROUP_SIZE``).
_ROW_GROUP = 122_880


class DuckDBConfig(DatabaseSinkSettings):
    """Settings of the ``duckdb`` sink."""

    path: Path = Field(
        description="The DuckDB database file; relative paths start at the project directory."
    )
    db_schema: str = Field("main", min_length=1, description="The schema the tables go in.")
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Threads DuckDB uses for this database file in this process (DuckDB's "
        "SET threads). By default one less than the cores this process may use, at least "
        "one: the rest of the pipeline (fetching, decoding, the sources) needs a core, and on "
        "two cores an insert takes as long with one DuckDB thread as with two, for a quarter "
        "less CPU. Flows and queries of the same process on this file share the setting.",
    )


def default_threads() -> int:
    """DuckDB threads when the sink does not say: the cores this process may use, less one
    for the rest of the pipeline, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _translate(exc: duckdb.Error, doing: str) -> ConnectorError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, duckdb.IOException | duckdb.OutOfMemoryException):
        return TargetUnavailable(f"{doing}: {text}")
    return ConnectorError(f"{doing}: {text}", retryable=False)


class DuckDBSink(DatabaseSink):
    """Copies topics into DuckDB tables, with offsets in the same transaction."""

    Config: ClassVar[type[DuckDBConfig]] = DuckDBConfig
    # One process at a time: DuckDB lets only one process write a database file.
    capabilities: ClassVar[Capabilities] = Capabilities(
        exclusive=True, exactly_once=True, upsert=True
    )
    config: DuckDBConfig

    def __init__(self, name: str, config: DuckDBConfig) -> None:
        super().__init__(name, config)
        self._con: duckdb.DuckDBPyConnection | None = None
        self.path = Path(config.path)

    # -- lifecycle --------------------------------------------------------------------

    def open(self, context: ConnectorContext) -> None:
        self._context = context
        self.path = context.path(self.config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start_worker()
        try:
            # Other connections in this process to the same file (flows) must be opened with
            # the same configuration, so the thread count is a SET, not a connect option.
            self._con = duckdb.connect(str(self.path))
            con = self._con
            threads = self.config.threads or default_threads()
            con.execute(f"SET threads = {int(threads)}")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.config.db_schema)}")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {qualified('main', OFFSETS_TABLE)} ("
                "sink VARCHAR, topic VARCHAR, partition INTEGER, next_offset BIGINT NOT NULL, "
                "updated_at TIMESTAMP, PRIMARY KEY (sink, topic, partition))"
            )
        except duckdb.Error as exc:
            self.close()
            raise _translate(exc, f"cannot open DuckDB database {self.path}") from exc
        context.register_system("duckdb", str(self.path))

    def close(self) -> None:
        self._stop_worker()
        if self._con is not None:
            con, self._con = self._con, None
            with contextlib.suppress(duckdb.Error):
                con.close()

    def assign(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        self._wait()
        con = self._connection()
        rows = con.execute(
            f"SELECT topic, partition, next_offset FROM {qualified('main', OFFSETS_TABLE)} "
            "WHERE sink = ?",
            [self.name],
        ).fetchall()
        stored = {TopicPartition(t, int(p)): int(o) for t, p, o in rows}
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise ConnectorError(f"the duckdb sink {self.name!r} is not open", retryable=True)
        return self._con

    # -- writing ----------------------------------------------------------------------

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        self._connection()
        # Decoding happens here while the worker still applies the previous batch.
        rows, bad = self._changes(batch)
        self._submit(self._commit, topic, batch, _in_row_groups(rows), bad)

    def _commit(
        self, topic: str, batch: FetchedBatch, rows: pa.Table, bad: list[tuple[int, str]]
    ) -> None:
        """One transaction: the rows, their dead letters, and the offset after them."""
        con = self._connection()
        upsert = self.config.mode == "upsert"
        table = self.config.table_for(topic)
        started = time.perf_counter()
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                if rows.num_rows:
                    bad += self._apply(con, topic, table, rows, upsert)
                con.execute(
                    f"INSERT OR REPLACE INTO {qualified('main', OFFSETS_TABLE)} "
                    "VALUES (?, ?, ?, ?, CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP))",
                    [self.name, batch.topic, batch.partition, batch.next_offset],
                )
                if bad:
                    self._dead_letter(batch, topic, bad)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            raise _translate(exc, f"writing {topic}[{batch.partition}] to {table}") from exc
        elapsed = time.perf_counter() - started
        self._applied(TopicPartition(batch.topic, batch.partition), batch.next_offset, elapsed)

    def _apply(
        self,
        con: duckdb.DuckDBPyConnection,
        topic: str,
        table: str,
        rows: pa.Table,
        upsert: bool,
    ) -> list[tuple[int, str]]:
        """Write the changes of one batch into ``table``; returns rows that did not fit."""
        rows = _without_null_columns(rows)
        data = [c for c in rows.column_names if c not in (SEQ, OP)]
        key = self.config.key if upsert else ()
        bad: list[tuple[int, str]] = []
        if key:
            rows, missing = _require_keys(rows, key, topic)
            bad += missing
        con.register("__batch", rows)
        try:
            incoming = {name: kind for name, kind, *_ in con.execute("DESCRIBE __batch").fetchall()}
            columns = self._table_columns(con, table)
            if columns is None:
                live = [c for c in data if c in incoming]
                if not pc.any(pc.equal(rows.column(OP), "u")).as_py():
                    return bad  # only deletes, and no table to delete from
                columns = self._create(con, topic, table, {c: incoming[c] for c in live}, key)
            else:
                columns = self._evolve(con, topic, table, columns, {c: incoming[c] for c in data})
            exprs, checks = _typed(data, incoming, columns)
            if checks:
                failed = _failures(con, checks, incoming, columns, topic, table)
                if failed:
                    bad += failed
                    keep = pc.invert(
                        pc.is_in(rows.column(SEQ), pa.array([s for s, _ in failed], pa.int64()))
                    )
                    rows = rows.filter(keep)
                    con.unregister("__batch")
                    con.register("__batch", rows)
            target = qualified(self.config.db_schema, table)
            if upsert:
                self._upsert(con, table, data, exprs, columns, key, rows)
            else:
                names = ", ".join(quote_identifier(c) for c in data)
                selected = ", ".join(exprs[c] for c in data)
                # A plain projection keeps the (offset) order of the batch.
                con.execute(f"INSERT INTO {target} ({names}) SELECT {selected} FROM __batch")
        finally:
            con.unregister("__batch")
        self._link(topic, table)
        return bad

    def _upsert(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        data: list[str],
        exprs: Mapping[str, str],
        columns: Mapping[str, str],
        key: tuple[str, ...],
        rows: pa.Table,
    ) -> None:
        q = quote_identifier
        seq, op = q(SEQ), q(OP)
        target = qualified(self.config.db_schema, table)
        ops = set(rows.column(OP).unique().to_pylist())
        if "t" in ops:
            # A truncate empties the table; only the changes after the last one count.
            truncated = pc.max(pc.filter(rows.column(SEQ), pc.equal(rows.column(OP), "t")))
            con.execute(f"DELETE FROM {target}")
            rows = rows.filter(pc.greater(rows.column(SEQ), truncated))
            if not rows.num_rows:
                return
            con.unregister("__batch")
            con.register("__batch", rows)
            ops = set(rows.column(OP).unique().to_pylist())
        typed = ", ".join(f"{exprs[c]} AS {q(c)}" for c in data)
        names = ", ".join(q(c) for c in data)
        keys = ", ".join(q(k) for k in key)
        joined = " AND ".join(f"{target}.{q(k)} = __last.{q(k)}" for k in key)
        source = f"(SELECT {seq}, {op}, {typed} FROM __batch)"
        # The last change per key. Keys are most often unique within a batch (a snapshot,
        # or a stream where a row changes once in a batch): then every change is the last
        # and the batch needs no window (and no copy).
        last = source
        if not _unique(rows, key):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE __last AS SELECT * FROM {source} "
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {seq} DESC) = 1"
            )
            last = "__last"
        if "d" in ops:
            con.execute(
                f"DELETE FROM {target} USING {last} AS __last WHERE __last.{op} = 'd' AND {joined}"
            )
        text = [c for c in data if c not in key and columns.get(c) == "VARCHAR"]
        if _has_placeholder(rows, text):
            con.execute(f"CREATE OR REPLACE TEMP TABLE __typed AS SELECT * FROM {source}")
            self._upsert_keeping_unavailable(con, target, data, key, text)
            return
        if "u" not in ops:
            return
        new = self._all_new(con, table, last, key, rows.num_rows)
        verb = "INSERT" if new else "INSERT OR REPLACE"
        con.execute(f"{verb} INTO {target} ({names}) SELECT {names} FROM {last} WHERE {op} = 'u'")

    def _all_new(
        self, con: duckdb.DuckDBPyConnection, table: str, last: str, key: tuple[str, ...], n: int
    ) -> bool:
        """Whether no key of the batch's upserts is in ``table`` yet (a plain INSERT then
        does; INSERT OR REPLACE, which looks every key up in the index, costs ~1.5x as much).

        Asked only while the table holds at most 100x the batch's rows: the question scans
        the table's keys (~2 ns a row: 37 ms for 20M rows), a plain INSERT saves ~0.6 us a
        row. A stream of small batches into a large table goes straight to INSERT OR
        REPLACE.
        """
        size = con.execute(
            "SELECT estimated_size FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
            [self.config.db_schema, table],
        ).fetchone()
        if size is None or size[0] > 100 * n:
            return False
        q = quote_identifier
        on = " AND ".join(f"__t.{q(k)} = __last.{q(k)}" for k in key)
        found = con.execute(
            f"SELECT count(*) FROM {last} AS __last SEMI JOIN "
            f"{qualified(self.config.db_schema, table)} AS __t ON {on} "
            f"WHERE __last.{q(OP)} = 'u'"
        ).fetchone()
        return found is not None and found[0] == 0

    def _upsert_keeping_unavailable(
        self,
        con: duckdb.DuckDBPyConnection,
        target: str,
        data: list[str],
        key: tuple[str, ...],
        text: list[str],
    ) -> None:
        """Upsert where some text values are Debezium's "unchanged TOASTed value" placeholder.

        Per key, each such column takes its last real value after the key's last delete in
        this batch, or else the value the row has in the table.
        """
        q = quote_identifier
        seq, op = q(SEQ), q(OP)
        keys = ", ".join(q(k) for k in key)
        placeholder = quote_literal(UNAVAILABLE)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __live AS SELECT * FROM ("
            f"SELECT *, max(CASE WHEN {op} = 'd' THEN {seq} END) "
            f"OVER (PARTITION BY {keys}) AS __del FROM __typed) "
            f"WHERE __del IS NULL OR {seq} > __del"
        )
        parts = [f"{q(k)}" for k in key]
        for i, c in enumerate(c for c in data if c not in key):
            if c in text:
                real = f"{q(c)} IS DISTINCT FROM {placeholder}"
                parts.append(f"arg_max_null({q(c)}, {seq}) FILTER (WHERE {real}) AS {q(c)}")
                parts.append(f"count(*) FILTER (WHERE {real}) = 0 AS __missing_{i}")
            else:
                parts.append(f"arg_max_null({q(c)}, {seq}) AS {q(c)}")
        parts.append("bool_or(__del IS NOT NULL) AS __deleted")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __agg AS SELECT {', '.join(parts)} "
            f"FROM __live GROUP BY {keys}"
        )
        select = [f"a.{q(k)}" for k in key]
        for i, c in enumerate(c for c in data if c not in key):
            if c in text:
                old = f"CASE WHEN a.__deleted THEN NULL ELSE t.{q(c)} END"
                select.append(f"CASE WHEN a.__missing_{i} THEN {old} ELSE a.{q(c)} END")
            else:
                select.append(f"a.{q(c)}")
        on = " AND ".join(f"t.{q(k)} = a.{q(k)}" for k in key)
        names = ", ".join(q(c) for c in [*key, *(c for c in data if c not in key)])
        con.execute(
            f"INSERT OR REPLACE INTO {target} ({names}) SELECT {', '.join(select)} "
            f"FROM __agg a LEFT JOIN {target} t ON {on}"
        )

    # -- tables -----------------------------------------------------------------------

    def _table_columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
        if table in self._columns:
            return self._columns[table]
        found = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [self.config.db_schema, table],
        ).fetchall()
        if not found:
            return None
        self._columns[table] = dict(found)
        return self._columns[table]

    def _create(
        self,
        con: duckdb.DuckDBPyConnection,
        topic: str,
        table: str,
        columns: dict[str, str],
        key: tuple[str, ...],
    ) -> dict[str, str]:
        defs = [
            f"{quote_identifier(c)} {kind}{' NOT NULL' if c in key else ''}"
            for c, kind in columns.items()
        ]
        if key:
            defs.append(f"PRIMARY KEY ({', '.join(quote_identifier(k) for k in key)})")
        target = qualified(self.config.db_schema, table)
        con.execute(f"CREATE TABLE {target} ({', '.join(defs)})")
        self._columns[table] = dict(columns)
        self._register(table, columns)
        return self._columns[table]

    def _evolve(
        self,
        con: duckdb.DuckDBPyConnection,
        topic: str,
        table: str,
        columns: dict[str, str],
        incoming: dict[str, str],
    ) -> dict[str, str]:
        """Add new columns; widen integer columns that now receive decimals."""
        target = qualified(self.config.db_schema, table)
        changed = False
        for name, kind in incoming.items():
            current = columns.get(name)
            if current is None:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_identifier(name)} {kind}")
                columns[name] = kind
                changed = True
            elif current in _INTEGERS and kind in _FLOATS and name not in self.config.key:
                con.execute(
                    f"ALTER TABLE {target} ALTER COLUMN {quote_identifier(name)} TYPE {kind}"
                )
                columns[name] = kind
                changed = True
        if changed:
            self._register(table, columns)
        return columns


def _in_row_groups(rows: pa.Table) -> pa.Table:
    """``rows`` in Arrow batches of one DuckDB row group each (the last one shorter).

    DuckDB writes an inserted batch of a whole row group straight to the file, while smaller
    ones (the JSON parser's, one per block) are collected and merged first: inserting 1M
    rows of ``perf sink`` data took 0.67-0.71 s instead of 0.75 s.
    """
    if rows.num_rows <= _ROW_GROUP and all(c.num_chunks <= 1 for c in rows.columns):
        return rows
    return pa.Table.from_batches(
        rows.combine_chunks().to_batches(max_chunksize=_ROW_GROUP), rows.schema
    )


def _without_null_columns(rows: pa.Table) -> pa.Table:
    """Columns with no type yet (only nulls so far) say nothing a table can store."""
    keep = [f.name for f in rows.schema if not pa.types.is_null(f.type)]
    return rows.select(keep) if len(keep) < rows.num_columns else rows


def _require_keys(
    rows: pa.Table, key: tuple[str, ...], topic: str
) -> tuple[pa.Table, list[tuple[int, str]]]:
    absent = [k for k in key if k not in rows.column_names]
    upserts = pc.equal(rows.column(OP), "u")
    if absent:
        if pc.any(upserts).as_py():
            fields = ", ".join(c for c in rows.column_names if c not in (SEQ, OP))
            raise IncompatibleChange(
                f"mode upsert with key {list(key)}, but the records of topic {topic!r} have "
                f"no field {absent[0]!r}; their fields: {fields or 'none'}"
            )
        # Deletes without their key are dead letters; truncates need no key.
        truncates = pc.equal(rows.column(OP), "t")
        keyless = pc.filter(rows.column(SEQ), pc.invert(truncates)).to_pylist()
        return rows.filter(truncates), [(int(s), f"no key column {absent[0]!r}") for s in keyless]
    missing = pc.is_null(rows.column(key[0]))
    for k in key[1:]:
        missing = pc.or_(missing, pc.is_null(rows.column(k)))
    truncates = pc.equal(rows.column(OP), "t")
    missing = pc.and_(missing, pc.invert(truncates))
    if not pc.any(missing).as_py():
        return rows, []
    seqs = pc.filter(rows.column(SEQ), missing).to_pylist()
    error = f"a value for each key column ({', '.join(key)}) is needed, found null"
    return rows.filter(pc.invert(missing)), [(int(s), error) for s in seqs]


def _typed(
    data: list[str], incoming: Mapping[str, str], columns: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """SQL expressions that give each column the table's type, and which need checking."""
    exprs: dict[str, str] = {}
    checks: list[str] = []
    for c in data:
        q = quote_identifier(c)
        have, want = incoming[c], columns.get(c, incoming[c])
        if have == want:
            exprs[c] = q
        elif want == "VARCHAR" and (have.startswith("STRUCT") or have.endswith("]")):
            exprs[c] = f"CAST(to_json({q}) AS VARCHAR)"
        elif want == "VARCHAR" or _widens(have, want):
            exprs[c] = f"CAST({q} AS {want})"
        else:
            exprs[c] = f"TRY_CAST({q} AS {want})"
            checks.append(c)
    return exprs, checks


def _widens(have: str, want: str) -> bool:
    if have in _INTEGERS and want in _INTEGERS:
        return _INTEGERS.index(have) <= _INTEGERS.index(want)
    return (have in _INTEGERS or have in _FLOATS) and want == "DOUBLE"


def _failures(
    con: duckdb.DuckDBPyConnection,
    checks: list[str],
    incoming: Mapping[str, str],
    columns: Mapping[str, str],
    topic: str,
    table: str,
) -> list[tuple[int, str]]:
    """Rows whose values do not convert to their column's type; raises when none does."""
    q = quote_identifier
    fails = [f"({q(c)} IS NOT NULL AND TRY_CAST({q(c)} AS {columns[c]}) IS NULL)" for c in checks]
    counts = ", ".join(
        f"count({q(c)}), count(*) FILTER (WHERE {f})" for c, f in zip(checks, fails, strict=True)
    )
    totals = con.execute(f"SELECT {counts} FROM __batch").fetchone()
    assert totals is not None
    for i, c in enumerate(checks):
        present, failed = int(totals[2 * i]), int(totals[2 * i + 1])
        if present and failed == present:
            raise IncompatibleChange(
                f"column {c!r} of table {table!r} is {columns[c]}, but the records of topic "
                f"{topic!r} now hold {incoming[c]} values that do not convert; change the "
                "table (or the data) and restart the sink"
            )
    flags = ", ".join(f"{f} AS f{i}" for i, f in enumerate(fails))
    texts = ", ".join(f"CAST({q(c)} AS VARCHAR) AS v{i}" for i, c in enumerate(checks))
    found = con.execute(
        f"SELECT {q(SEQ)}, {flags}, {texts} FROM __batch WHERE {' OR '.join(fails)}"
    ).fetchall()
    out = []
    for row in found:
        seq, flagged, values = row[0], row[1 : 1 + len(checks)], row[1 + len(checks) :]
        which = [i for i, f in enumerate(flagged) if f]
        reasons = "; ".join(
            f"column {checks[i]!r}: {str(values[i])[:80]!r} is not a {columns[checks[i]]}"
            for i in which
        )
        out.append((int(seq), reasons))
    return out


def _unique(rows: pa.Table, key: tuple[str, ...]) -> bool:
    """Whether no key occurs twice among ``rows``."""
    keys = rows.select(list(key))
    return bool(keys.group_by(list(key)).aggregate([]).num_rows == keys.num_rows)


def _has_placeholder(rows: pa.Table, text: list[str]) -> bool:
    for c in text:
        column = rows.column(c)
        if pa.types.is_string(column.type) and pc.any(pc.equal(column, UNAVAILABLE)).as_py():
            return True
    return False
