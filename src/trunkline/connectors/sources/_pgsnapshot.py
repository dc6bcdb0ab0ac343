"""Reading tables for a snapshot: chunks of rows, as text, in one consistent transaction.

The reader imports a snapshot exported by ``CREATE_REPLICATION_SLOT ... (SNAPSHOT
'export')`` into a ``REPEATABLE READ, READ ONLY`` transaction: every chunk sees the database
exactly as of the slot's consistent point, so the stream that starts there continues with
no gap and no overlap.

Tables with a key are read in chunks by keyset (``WHERE (key) > (last key) ORDER BY key
LIMIT n``, an index range scan each), which is what makes progress resumable; tables
without one are read in one pass, a chunk at a time. Rows arrive through the ADBC
PostgreSQL driver, which runs each query as ``COPY (SELECT ...) TO STDOUT (FORMAT binary)``
and decodes straight into Arrow in C++ (measured at about 3x psycopg's ``COPY`` loop,
which spends two microseconds of Python per row). Every column is selected as its text
output (:mod:`._pgvalues` turns text into JSON), except text types, whose binary form is
their text already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from psycopg import sql

from trunkline.connectors.sources._pgcatalog import Table
from trunkline.errors import ConnectorError, MissingDependency, TargetUnavailable

__all__ = ["SnapshotReader", "key_after", "last_key"]

#: text, varchar, bpchar, name: already text in binary COPY (a ::text cast would even trim
#: char(n)'s padding, which pgoutput keeps).
_TEXT_OIDS = {25, 1043, 1042, 19}


def _columns(table: Table) -> sql.Composable:
    parts = []
    for i, column in enumerate(table.columns):
        ident = sql.Identifier("t", column.name)
        if column.type.oid in _TEXT_OIDS:
            value: sql.Composable = ident
        elif column.cast_differs:
            # format() writes with the output function, as pgoutput does (but '' for NULL).
            value = sql.SQL("CASE WHEN {0} IS NOT NULL THEN format('%s', {0}) END").format(ident)
        else:
            value = sql.SQL("{}::text").format(ident)  # I/O conversion: the output function
        parts.append(sql.SQL("{} AS {}").format(value, sql.Identifier(f"c{i}")))
    return sql.SQL(", ").join(parts) if parts else sql.SQL("NULL AS c0")


def last_key(table: Table, chunk: pa.Table) -> list[str]:
    """The key of the last row of a chunk, as text (where the next chunk starts)."""
    names = [c.name for c in table.columns]
    return [str(chunk.column(names.index(k))[-1].as_py()) for k in table.key]


def key_after(table: Table, alias: str, after: Sequence[str]) -> sql.Composable:
    """``(alias.k1, ...) > ('v1'::type1, ...)``: the rows after a key given as text."""
    columns = [table.column(k) for k in table.key]
    left = sql.SQL(", ").join(sql.Identifier(alias, c.name) for c in columns)
    right = sql.SQL(", ").join(
        sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(c.type.name))
        for c, value in zip(columns, after, strict=True)
    )
    return sql.SQL("({}) > ({})").format(left, right)


class SnapshotReader:
    """Chunks of tables as of one exported snapshot.

    Args:
        conninfo: The database.
        snapshot: The exported snapshot's name.
        settings: Session settings (output formats), set before the transaction starts.
    """

    def __init__(self, conninfo: str, snapshot: str, settings: Mapping[str, str]) -> None:
        try:
            import adbc_driver_manager
            import adbc_driver_postgresql.dbapi as adbc
        except ImportError as exc:
            raise MissingDependency("adbc-driver-postgresql", extra="postgres") from exc
        self._errors: type[Exception] = adbc_driver_manager.Error
        try:
            self._conn = adbc.connect(conninfo, autocommit=True)
        except self._errors as exc:
            raise TargetUnavailable(f"cannot connect to read the snapshot: {exc}") from exc
        self._cursor = self._conn.cursor()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="snapshot-read")
        self._ahead: tuple[tuple[Any, ...], Future[pa.Table]] | None = None
        self._scan: Iterator[pa.RecordBatch] | None = None
        try:
            for name, value in settings.items():
                self._execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), value))
            self._execute(sql.SQL("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            self._execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        except BaseException:
            self.close()
            raise

    def _execute(self, statement: sql.Composable) -> None:
        try:
            self._cursor.execute(statement.as_string())
        except self._errors as exc:
            raise _translate(exc) from exc

    def chunk(self, table: Table, after: Sequence[str] | None, limit: int) -> pa.Table:
        """Up to ``limit`` rows of a keyed table after the key ``after`` (None: the first),
        in key order; one text column per table column.

        A full chunk starts the query for the next one in the background: the server and
        the driver produce chunk n + 1 while the caller turns chunk n into events.
        """
        wanted = (table.qualified, tuple(after) if after else None, limit)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == wanted:
            result = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].result()  # the cursor is free once it is done
            result = self._fetch(table, after, limit)
        if result.num_rows == limit:
            following = (table.qualified, tuple(last_key(table, result)), limit)
            future = self._pool.submit(self._fetch, table, following[1], limit)
            self._ahead = (following, future)
        return result

    def _fetch(self, table: Table, after: Sequence[str] | None, limit: int) -> pa.Table:
        where = sql.SQL("WHERE {}").format(key_after(table, "t", after)) if after else sql.SQL("")
        order = sql.SQL(", ").join(sql.Identifier("t", k) for k in table.key)
        query = sql.SQL("SELECT {} FROM {} t {} ORDER BY {} LIMIT {}").format(
            _columns(table), table.ident, where, order, sql.Literal(limit)
        )
        try:
            self._cursor.execute(query.as_string())
            return self._cursor.fetch_arrow_table()
        except self._errors as exc:
            raise _translate(exc) from exc

    def scan(self, table: Table, limit: int) -> pa.Table | None:
        """The next up to ``limit`` rows of a table without a key (one pass over it);
        None once it is read whole."""
        try:
            if self._scan is None:
                query = sql.SQL("SELECT {} FROM {} t").format(_columns(table), table.ident)
                self._cursor.execute(query.as_string())
                self._scan = iter(self._cursor.fetch_record_batch())
            batches: list[pa.RecordBatch] = []
            rows = 0
            for batch in self._scan:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= limit:
                    break
        except self._errors as exc:
            raise _translate(exc) from exc
        if not batches:
            self._scan = None
            return None
        return pa.Table.from_batches(batches)

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._ahead = None
        for thing in (getattr(self, "_cursor", None), getattr(self, "_conn", None)):
            if thing is not None:
                # Closing after a failure must not mask it.
                with contextlib.suppress(Exception):
                    thing.close()
        self._cursor = self._conn = None


def _translate(exc: Any) -> ConnectorError:
    """An ADBC error in trunkline's terms: a lost server is retried, and so is the rest
    (the snapshot continues from its last checkpointed key)."""
    import adbc_driver_manager

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, adbc_driver_manager.OperationalError):
        return TargetUnavailable(f"reading the snapshot: {text}")
    return ConnectorError(f"reading the snapshot: {text}", retryable=True)
