"""Skipping streamed changes that a snapshot taken after a restart already holds.

After a restart in the middle of a snapshot, the rest of a table is read from a newer
snapshot (taken at LSN *Y*) while the stream still starts at the first consistent point.
A *segment* ``(bound, Y)`` says: rows whose key is after ``bound`` (all rows when ``bound``
is None) were read at *Y*, so their changes that committed before *Y* are in the snapshot
already and must not be applied again. Keys are compared by PostgreSQL itself, with the
key columns' types, exactly as the snapshot ordered them.

The bound is the last key whose row is in the hub. The checkpoint knows the last key of
the batches that were durable when it was taken, but a crash leaves some batches after it
in the hub too (they are recognised by their ids, not written again, when the rows are read
anew). :func:`written_bound` finds the last key among them, so that those rows, which keep
the values of the first snapshot, also keep every change made since.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from trunkline.connectors.sources._pgcatalog import Table
from trunkline.connectors.sources._pgevents import ChangeSet
from trunkline.connectors.sources._pgvalues import Kind
from trunkline.errors import HubError
from trunkline.hub import Hub

__all__ = ["Segment", "in_snapshot", "written_bound"]

#: (the last key read before the new snapshot, as text; the new snapshot's LSN)
Segment = tuple[list[str] | None, int]


def in_snapshot(
    conn: psycopg.Connection, table: Table, changes: ChangeSet, segments: list[Segment]
) -> np.ndarray:
    """Which changes of ``changes`` a later snapshot holds already (a boolean mask)."""
    commits = np.asarray(changes.commit_lsn, dtype=np.uint64)
    drop = np.zeros(len(changes), dtype=bool)
    bounded: list[tuple[list[str], np.ndarray]] = []
    for bound, lsn in segments:
        before = commits < np.uint64(lsn)
        if bound is None:
            drop |= before
        elif before.any():
            bounded.append((bound, before))
    if bounded:
        drop |= _after_bounds(conn, table, changes, bounded)
    return drop


def _after_bounds(
    conn: psycopg.Connection,
    table: Table,
    changes: ChangeSet,
    bounded: list[tuple[list[str], np.ndarray]],
) -> np.ndarray:
    names = [c.name for c in table.columns]
    keys = changes.key_texts([names.index(k) for k in table.key])
    columns = [table.column(k) for k in table.key]
    aliases = [sql.Identifier(f"k{j}") for j in range(len(columns))]
    typed = sql.SQL(", ").join(
        sql.SQL("{}::{}").format(a, sql.SQL(c.type.name))
        for a, c in zip(aliases, columns, strict=True)
    )
    tests = []
    for bound, _ in bounded:
        limit = sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(c.type.name))
            for v, c in zip(bound, columns, strict=True)
        )
        tests.append(sql.SQL("coalesce(({}) > ({}), false)").format(typed, limit))
    query = sql.SQL("SELECT {} FROM unnest({}) WITH ORDINALITY AS u({}, n) ORDER BY n").format(
        sql.SQL(", ").join(tests),
        sql.SQL(", ").join(sql.SQL("{}::text[]").format(sql.Placeholder()) for _ in columns),
        sql.SQL(", ").join(aliases),
    )
    rows = conn.execute(query, keys).fetchall()
    drop = np.zeros(len(changes), dtype=bool)
    for i, (_, committed_before) in enumerate(bounded):
        after_bound = np.array([bool(r[i]) for r in rows], dtype=bool)
        drop |= after_bound & committed_before
    return drop


def _key_value(column_type: Kind, type_name: str, field: sql.Composable) -> sql.Composable | None:
    if column_type is Kind.ARRAY:
        return None
    if column_type is Kind.BYTEA:
        return sql.SQL("decode({}, 'hex')").format(field)
    return sql.SQL("({})::{}").format(field, sql.SQL(type_name))


def written_bound(
    conn: psycopg.Connection, hub: Hub, table: Table, topic: str, since: dict[int, int]
) -> list[str] | None:
    """The greatest key (as text) of the records of ``topic`` after the offsets ``since``;
    None when there are none, or when the key cannot be read back (array keys)."""
    keys: list[str] = []
    try:
        ends = hub.end_offsets(topic)
        for partition, end in ends.items():
            offset = since.get(partition, end)
            while offset < end:
                batch = hub.fetch(topic, partition, offset, max_records=50_000)
                keys += [k.decode() for k in batch.records.column("key").to_pylist() if k]
                offset = batch.next_offset
    except HubError:
        return None
    if not keys:
        return None
    values = []
    for name in table.key:
        column = table.column(name)
        field = sql.SQL("k::json->>{}").format(sql.Literal(name))
        value = _key_value(column.type.kind, column.type.name, field)
        if value is None:
            return None
        values.append(value)
    order = sql.SQL(", ").join(
        sql.SQL("{} DESC").format(sql.Identifier(f"v{i}")) for i in range(len(values))
    )
    query = sql.SQL(
        "SELECT {} FROM (SELECT {} FROM unnest(%s::text[]) AS u(k)) s ORDER BY {} LIMIT 1"
    ).format(
        sql.SQL(", ").join(
            sql.SQL("{}::text").format(sql.Identifier(f"v{i}")) for i in range(len(values))
        ),
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(v, sql.Identifier(f"v{i}")) for i, v in enumerate(values)
        ),
        order,
    )
    row = conn.execute(query, [keys]).fetchone()
    return None if row is None else [str(v) for v in row]
