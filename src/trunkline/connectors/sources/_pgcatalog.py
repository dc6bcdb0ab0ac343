"""What the ``postgres_cdc`` source asks PostgreSQL's catalog: tables, their columns and keys,
the publication, and the replication slot."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from trunkline.connectors.sources._pgvalues import PgType, pg_type
from trunkline.errors import ConnectorError

__all__ = [
    "Column",
    "SlotState",
    "Table",
    "describe_tables",
    "ensure_publication",
    "lookup_types",
    "slot_state",
]


@dataclass(frozen=True, slots=True)
class Column:
    """A column; ``cast_differs`` when ``::text`` is a cast function that writes something
    else than the type's output function, which pgoutput uses (``boolean`` gives ``true``
    for ``t``, ``inet`` adds ``/32``)."""

    name: str
    type: PgType
    cast_differs: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """A captured table.

    ``key`` are the columns that identify a row: the primary key, else the replica identity
    index; empty for tables with neither (their events have no key).
    """

    schema: str
    name: str
    oid: int
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    identity: str  # pg_class.relreplident: d, n, f or i

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True, slots=True)
class SlotState:
    plugin: str
    database: str
    active_pid: int | None
    confirmed_flush: str | None
    restart_lsn: str | None
    wal_status: str | None


_TYPES = """
SELECT t.oid, format_type(t.oid, NULL), t.typtype, t.typbasetype, t.typcategory, t.typelem,
       t.typdelim, et.typbasetype
FROM pg_type t LEFT JOIN pg_type et ON et.oid = t.typelem
WHERE t.oid = ANY(%s)
"""


def lookup_types(conn: psycopg.Connection, oids: Iterable[int]) -> dict[int, PgType]:
    """:class:`PgType` of each type oid (domains resolved to their base type)."""
    wanted = sorted(set(oids))
    found: dict[int, PgType] = {}
    if not wanted:
        return found
    for oid, name, typtype, base, category, element, delim, element_base in conn.execute(
        _TYPES, [wanted]
    ).fetchall():
        if typtype == "d" and base:
            inner = lookup_types(conn, [base]).get(base)
            kind = inner or pg_type(base, name)
            found[oid] = PgType(oid, name, kind.kind, kind.element, kind.delimiter)
        elif category == "A" and element:
            found[oid] = pg_type(oid, name, element_oid=element_base or element, delimiter=delim)
        else:
            found[oid] = pg_type(oid, name)
    return found


_TABLE = """
SELECT c.oid, n.nspname, c.relname, c.relreplident, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
_COLUMNS = """
SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod),
       EXISTS (SELECT 1 FROM pg_cast c
               WHERE c.castsource = coalesce(nullif(t.typbasetype, 0), a.atttypid)
                 AND c.casttarget = 'text'::regtype AND c.castmethod = 'f')
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_KEY = """
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s AND (i.indisprimary OR (%s AND i.indisreplident))
ORDER BY i.indisprimary DESC, array_position(i.indkey::int2[], a.attnum)
"""


def describe_tables(
    conn: psycopg.Connection, names: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Table]:
    """The tables ``(schema, name)``; a table that does not exist is an error naming it."""
    out: dict[tuple[str, str], Table] = {}
    for schema, name in names:
        row = conn.execute(_TABLE, [schema, name]).fetchone()
        if row is None or row[4] not in ("r", "p"):
            raise ConnectorError(_missing(conn, schema, name), retryable=False)
        oid, schema, name, identity, _kind = row
        raw = conn.execute(_COLUMNS, [oid]).fetchall()
        types = lookup_types(conn, [type_oid for _, type_oid, _, _ in raw])
        columns = tuple(
            Column(column, replace(types[type_oid], name=formatted), bool(differs))
            for column, type_oid, formatted, differs in raw
        )
        keys = conn.execute(_KEY, [oid, identity == "i"]).fetchall()
        key: list[str] = []
        for (column,) in keys:
            if column not in key:
                key.append(column)
        # A primary key wins; the replica identity index counts only without one.
        out[(schema, name)] = Table(schema, name, oid, columns, tuple(key), identity)
    return out


def _missing(conn: psycopg.Connection, schema: str, name: str) -> str:
    known = [
        f"{s}.{n}"
        for s, n in conn.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
    ]
    close = difflib.get_close_matches(f"{schema}.{name}", known, n=1)
    hint = f" - did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    database = conn.info.dbname
    return (
        f"table {schema}.{name} does not exist in database {database!r}{hint} "
        f"(tables there: {listing or 'none'})"
    )


def ensure_publication(
    conn: psycopg.Connection, name: str, tables: Sequence[Table], *, create: bool
) -> list[str]:
    """Make ``name`` publish ``tables``; returns the tables it had to add.

    With ``create`` the publication is created, or extended, as needed; without it a
    missing publication or table is an error that says what to run.
    """
    row = conn.execute(
        "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate "
        "FROM pg_publication WHERE pubname = %s",
        [name],
    ).fetchone()
    wanted = [t.qualified for t in tables]
    idents = sql.SQL(", ").join(t.ident for t in tables)
    if row is None:
        statement = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
            sql.Identifier(name), idents
        )
        if not create:
            raise ConnectorError(
                f"publication {name!r} does not exist; create it with: "
                f"{statement.as_string(conn)} (or set create_publication: true)",
                retryable=False,
            )
        conn.execute(statement)
        return wanted
    all_tables, *publishes = row
    missing_ops = [
        op
        for op, on in zip(("insert", "update", "delete", "truncate"), publishes, strict=True)
        if not on
    ]
    essential = [op for op in missing_ops if op != "truncate"]
    if essential:
        raise ConnectorError(
            f"publication {name!r} does not publish {', '.join(essential)}: change events "
            f"would be missing; run ALTER PUBLICATION {name} SET (publish = 'insert, update, "
            "delete, truncate')",
            retryable=False,
        )
    if all_tables:
        return []
    published = {
        f"{s}.{t}"
        for s, t in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", [name]
        ).fetchall()
    }
    absent = [t for t in tables if t.qualified not in published]
    if not absent:
        return []
    statement = sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
        sql.Identifier(name), sql.SQL(", ").join(t.ident for t in absent)
    )
    if not create:
        raise ConnectorError(
            f"publication {name!r} does not publish {', '.join(t.qualified for t in absent)}; "
            f"run: {statement.as_string(conn)}",
            retryable=False,
        )
    conn.execute(statement)
    return [t.qualified for t in absent]


def slot_state(conn: psycopg.Connection, slot: str) -> SlotState | None:
    """The replication slot ``slot``, or None if there is none."""
    wal_status = "wal_status" if conn.info.server_version >= 130000 else "NULL"
    row = conn.execute(
        sql.SQL(
            "SELECT plugin, database, active_pid, confirmed_flush_lsn::text, "
            "restart_lsn::text, {}::text FROM pg_replication_slots WHERE slot_name = %s"
        ).format(sql.SQL(wal_status)),
        [slot],
    ).fetchone()
    if row is None:
        return None
    return SlotState(*row)
