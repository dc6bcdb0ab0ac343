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

A snapshot says what rows there are, not which are gone: a row that an earlier snapshot
wrote to the hub and that was deleted before *Y* is simply absent from the new snapshot, and
dropping its delete would leave the old row in every sink. So for a key whose changes before
*Y* are skipped, the first delete (or a truncate of the table) is kept, and so is every
change of that key after it: replayed from a delete, the key's changes end in its state at
*Y*, whatever the hub held before. :class:`Replayed` remembers those keys across batches
and restarts.
"""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from trunkline.connectors.sources._pgcatalog import Table
from trunkline.connectors.sources._pgevents import ChangeSet
from trunkline.connectors.sources._pgvalues import Kind
from trunkline.errors import ConnectorError, HubError
from trunkline.hub import Hub

__all__ = ["Replayed", "Segment", "in_snapshot", "written_bound"]

#: (the last key read before the new snapshot, as text; the new snapshot's LSN)
Segment = tuple[list[str] | None, int]


#: Separates the key columns' texts in the one string that stands for a key.
_SEPARATOR = "\x1f"


class Replayed:
    """The keys of one table whose changes are replayed although a later snapshot covers
    them (a delete of theirs was), and whether a truncate made that every key."""

    def __init__(self, keys: list[str] | None = None, everything: bool = False) -> None:
        self.keys: set[str] = set(keys or ())
        self.everything = everything

    def __bool__(self) -> bool:
        return self.everything or bool(self.keys)

    def to_json(self) -> dict[str, object]:
        return {"keys": sorted(self.keys), "all": self.everything}

    @classmethod
    def from_json(cls, saved: object, where: str = "the checkpoint") -> Replayed:
        keys = saved.get("keys", []) if isinstance(saved, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConnectorError(
                f"{where}: expected {{'keys': [text, ...], 'all': true|false}}, "
                f"found {json.dumps(saved)[:200]}",
                retryable=False,
            )
        assert isinstance(saved, dict)
        return cls(keys, bool(saved.get("all")))


def in_snapshot(
    conn: psycopg.Connection,
    table: Table,
    changes: ChangeSet,
    segments: list[Segment],
    replayed: Replayed,
) -> np.ndarray:
    """Which changes of ``changes`` a later snapshot holds already (a boolean mask); updates
    ``replayed`` with the keys deleted before that snapshot."""
    commits = np.asarray(changes.commit_lsn, dtype=np.uint64)
    covered = np.zeros(len(changes), dtype=bool)
    bounded: list[tuple[list[str], np.ndarray]] = []
    for bound, lsn in segments:
        before = commits < np.uint64(lsn)
        if bound is None:
            covered |= before
        elif before.any():
            bounded.append((bound, before))
    if bounded:
        covered |= _after_bounds(conn, table, changes, bounded)
    if not covered.any():
        return covered
    kept = _replay(table, changes, covered, replayed)
    drop: np.ndarray = covered & ~kept
    return drop


def _replay(
    table: Table, changes: ChangeSet, covered: np.ndarray, replayed: Replayed
) -> np.ndarray:
    """Which covered changes are kept all the same: a table's changes from its first
    truncate on, a key's from its first delete on (see the module's notes)."""
    keep = np.zeros(len(changes), dtype=bool)
    if replayed.everything:
        return covered.copy()
    truncates = np.flatnonzero(covered & (changes.op == "t"))
    if len(truncates):
        keep[truncates[0] :] = covered[truncates[0] :]
        replayed.everything = True
        covered = covered.copy()
        covered[truncates[0] :] = False  # decided
    rows = np.flatnonzero(covered)
    if not len(rows):
        return keep
    names = [c.name for c in table.columns]
    values = changes.take(rows).key_values([names.index(k) for k in table.key])
    if not values:  # no key: only a truncate can say a row is gone
        return keep
    columns = [pc.fill_null(v.cast(pa.string()), "") for v in values]
    joined = pc.binary_join_element_wise(*columns, _SEPARATOR)
    encoded = pc.dictionary_encode(joined)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    distinct = encoded.dictionary
    known = pc.is_in(distinct, value_set=pa.array(sorted(replayed.keys), pa.string()))
    known = np.asarray(known.to_numpy(zero_copy_only=False), dtype=bool)
    order = np.arange(len(rows))
    first = np.full(len(distinct), len(rows), dtype=np.int64)
    deletes = changes.op[rows] == "d"
    np.minimum.at(first, codes[deletes], order[deletes])
    keep[rows] = known[codes] | (order >= first[codes])
    if replayed.everything:
        replayed.keys.clear()  # every key is replayed from here on
    else:
        replayed.keys.update(distinct.filter(pa.array(first < len(rows))).to_pylist())
    return keep


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
    """The greatest key (as text) of the records of ``topic`` after the offsets ``since``
    (from the start of a partition it does not name); None when there are none, or when the
    key cannot be read back (array keys)."""
    keys: list[str] = []
    try:
        ends = hub.end_offsets(topic)
        starts = hub.start_offsets(topic)
        for partition, end in ends.items():
            offset = max(since.get(partition, starts[partition]), starts[partition])
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
    # Ordered by the typed values: the text outputs have names of their own, as an output
    # column named like an input one would be what ORDER BY sorts by ('99' > '100000').
    order = sql.SQL(", ").join(
        sql.SQL("{} DESC NULLS LAST").format(sql.Identifier("s", f"v{i}"))
        for i in range(len(values))
    )
    query = sql.SQL(
        "SELECT {} FROM (SELECT {} FROM unnest(%s::text[]) AS u(k)) s ORDER BY {} LIMIT 1"
    ).format(
        sql.SQL(", ").join(
            sql.SQL("{}::text AS {}").format(sql.Identifier("s", f"v{i}"), sql.Identifier(f"t{i}"))
            for i in range(len(values))
        ),
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(v, sql.Identifier(f"v{i}")) for i, v in enumerate(values)
        ),
        order,
    )
    row = conn.execute(query, [keys]).fetchone()
    return None if row is None else [str(v) for v in row]
