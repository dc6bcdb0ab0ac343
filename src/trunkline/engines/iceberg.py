"""The Iceberg engine: scans a table of an Iceberg SQL catalog to Arrow through pyiceberg.

It runs one kind of fragment, like the hub engine: ``SELECT columns FROM table WHERE
predicate``. The projection and the predicate go into pyiceberg's scan
(``selected_fields``, ``row_filter``), so whole data files are skipped by their column
statistics and only the needed columns are read. The predicate may be made of comparisons
of a column with a constant, ``AND``/``OR``/``NOT``, ``IN`` lists, ``BETWEEN`` and
``IS [NOT] NULL``; anything else the engine declares it cannot run, and placement keeps
that filter on the coordinator.

A system's location is its SQL catalog (pyiceberg's ``SqlCatalog``, the JDBC catalog
layout): ``sqlite:////abs/path/catalog.db``, or ``postgresql://user:${PW}@host/db`` with the
password from the environment, or a ``file://`` warehouse folder whose ``catalog.db`` is the
catalog (as the iceberg sink registers its system). Tables are named ``namespace.table``;
the catalog's name inside the SQL catalog is the ``catalog_name`` option (``trunkline``, as
the iceberg sink writes it, by default).

Example:
    >>> engine = IcebergEngine()  # doctest: +SKIP
    >>> bool(engine.can_run(Step(frozenset({"scan", "filter"}))))  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Not,
    NotEqualTo,
    NotNull,
    Or,
)
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema
from sqlglot import exp

from trunkline.engines._discover import Discovered, Measured, summarize
from trunkline.engines._types import sql_type
from trunkline.engines.base import Capabilities, Fragment, Source, Step, Verdict, check
from trunkline.engines.postgres import connect_dsn, redact
from trunkline.errors import ConfigError, EngineError
from trunkline.meta import Column

__all__ = [
    "CAPABILITIES",
    "IcebergEngine",
    "analyze",
    "catalog_columns",
    "discover",
    "open_catalog",
]

#: Expression kinds the scan hands to pyiceberg (sqlglot's keys, upper case).
ICEBERG_FUNCTIONS = frozenset(
    {"EQ", "NEQ", "GT", "GTE", "LT", "LTE", "AND", "OR", "NOT", "IN", "BETWEEN", "IS"}
)

CAPABILITIES = Capabilities(
    operators=frozenset({"scan", "filter", "project"}),
    functions=ICEBERG_FUNCTIONS,
    reads=frozenset({"iceberg"}),
    accepts_arrow=False,
    dialect=None,
)

#: The catalog name the iceberg sink writes its tables under.
DEFAULT_CATALOG_NAME = "trunkline"


def _uri(location: str, options: Mapping[str, Any], env: Mapping[str, str] | None) -> str:
    """The SQLAlchemy URL to open: the password from the environment, psycopg 3 as driver."""
    if location.startswith("file://"):
        # A warehouse folder: its catalog is the catalog.db the iceberg sink keeps there.
        return f"sqlite:///{Path(location.removeprefix('file://')) / 'catalog.db'}"
    for plain in ("postgresql://", "postgres://"):
        if location.startswith(plain):
            # SQLAlchemy's default driver for a bare postgresql:// URL is psycopg2; trunkline
            # installs psycopg 3.
            dsn = connect_dsn(location, options, env)
            return "postgresql+psycopg://" + dsn.removeprefix(plain)
    return location


def open_catalog(
    location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> SqlCatalog:
    """The SQL catalog at ``location`` (opened read-only: no catalog tables are created).

    Raises:
        EngineError: the catalog cannot be opened (retryable: a server may come back).
    """
    name = str(options.get("catalog_name", DEFAULT_CATALOG_NAME))
    try:
        return SqlCatalog(name, uri=_uri(location, options, env), init_catalog_tables="false")
    except ConfigError:
        raise
    except Exception as exc:  # pyiceberg and SQLAlchemy raise many kinds
        raise EngineError(
            f"iceberg: cannot open the SQL catalog {redact(location)}: {exc}",
            engine="iceberg",
            retryable=True,
        ) from exc


def _close(catalog: SqlCatalog) -> None:
    engine = getattr(catalog, "engine", None)
    if engine is not None:
        engine.dispose()


def _summary_int(summary: Any, key: str) -> int | None:
    if summary is None:
        return None
    value = (
        summary.additional_properties.get(key)
        if hasattr(summary, "additional_properties")
        else None
    )
    if value is None:
        try:
            value = summary[key]
        except (KeyError, TypeError):
            return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def catalog_columns(schema: Schema) -> tuple[Column, ...]:
    """The columns of an Iceberg schema as the catalog stores them: SQL (DuckDB) type names,
    which the planner reads back (``long`` is ``BIGINT``, ``list<string>`` ``VARCHAR[]``).

    Discovery and the iceberg sink both register tables with it, so a table reads the
    same whichever of them registered it last.

    Example:
        >>> from pyiceberg.types import LongType, NestedField, TimestampType
        >>> schema = Schema(NestedField(1, "id", LongType(), required=True),
        ...                 NestedField(2, "at", TimestampType()))
        >>> [(c.name, c.type, c.nullable) for c in catalog_columns(schema)]
        [('id', 'BIGINT', False), ('at', 'TIMESTAMP', True)]
    """
    arrow = schema_to_pyarrow(schema, include_field_ids=False)
    return tuple(Column(f.name, sql_type(f.type), f.nullable) for f in arrow)


def discover(
    location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[Discovered]:
    """Every table of the catalog: ``namespace.table``, its columns, and rows and bytes from
    its current snapshot's summary (``total-records``, ``total-files-size``)."""
    catalog = open_catalog(location, options, env)
    try:
        found = []
        try:
            namespaces = _all_namespaces(catalog)
            identifiers = [i for ns in namespaces for i in catalog.list_tables(ns)]
        except Exception as exc:
            raise EngineError(
                f"iceberg: cannot list the tables of catalog {redact(location)}: {exc}"
                " (expected an Iceberg SQL catalog, with its iceberg_tables table)",
                engine="iceberg",
            ) from exc
        for identifier in sorted(identifiers):
            table = catalog.load_table(identifier)
            columns = catalog_columns(table.schema())
            snapshot = table.current_snapshot()
            summary = snapshot.summary if snapshot is not None else None
            rows = 0 if snapshot is None else _summary_int(summary, "total-records")
            size = 0 if snapshot is None else _summary_int(summary, "total-files-size")
            found.append(
                Discovered(
                    ".".join(identifier),
                    "table",
                    columns,
                    rows,
                    size,
                    "iceberg snapshot summary",
                )
            )
        return found
    finally:
        _close(catalog)


def _all_namespaces(catalog: SqlCatalog) -> list[tuple[str, ...]]:
    found, pending = [], list(catalog.list_namespaces())
    while pending:
        namespace = pending.pop()
        found.append(namespace)
        pending += [n for n in catalog.list_namespaces(namespace) if n != namespace]
    return found


def analyze(
    location: str, options: Mapping[str, Any], name: str, env: Mapping[str, str] | None = None
) -> Measured:
    """Rows, bytes and per-column statistics of table ``name`` (one full scan)."""
    catalog = open_catalog(location, options, env)
    try:
        table = _load(catalog, name)
        data = table.scan().to_arrow()
        snapshot = table.current_snapshot()
        size = _summary_int(snapshot.summary, "total-files-size") if snapshot else 0
    finally:
        _close(catalog)
    with duckdb.connect() as con:
        con.register("iceberg_table", data)
        measured = summarize(con, "iceberg_table", "analyze")
    return Measured(measured.rows, size, measured.source, measured.columns)


def _load(catalog: SqlCatalog, name: str) -> Any:
    try:
        return catalog.load_table(name)
    except NoSuchTableError as exc:
        raise EngineError(
            f"iceberg: table {name!r} is not in the catalog (any more); register the system "
            "again with trunkline catalog add",
            engine="iceberg",
        ) from exc


class _Unbound(Exception):
    """pyiceberg cannot bind a filter's constant to its column's type."""


# The engine -----------------------------------------------------------------------------


class IcebergEngine:
    """Reads tables of the catalog's Iceberg systems, one catalog connection per system."""

    name = "iceberg"
    kind = "iceberg"
    system: str | None = None
    capabilities = CAPABILITIES

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._catalogs: dict[str, SqlCatalog] = {}

    def can_run(self, step: Step) -> Verdict:
        return check(self.capabilities, self.system, step)

    def close(self) -> None:
        for catalog in self._catalogs.values():
            _close(catalog)
        self._catalogs.clear()

    @staticmethod
    def _parts(fragment: Fragment) -> tuple[Source, exp.Select, list[str]]:
        query = fragment.query
        if not isinstance(query, exp.Select) or query.args.get("joins"):
            raise EngineError("the iceberg engine scans one table per step", engine="iceberg")
        table = query.args["from_"].this
        source = fragment.sources.get(table.name)
        if source is None:
            raise EngineError(
                f"the iceberg engine has no table for {table.name!r}", engine="iceberg"
            )
        columns = []
        for item in query.expressions:
            inner = item.this if isinstance(item, exp.Alias) else item
            if not isinstance(inner, exp.Column):
                raise EngineError(
                    f"the iceberg engine selects columns only, not {item.sql('duckdb')}",
                    engine="iceberg",
                )
            columns.append(inner.name)
        return source, query, columns

    def render(self, fragment: Fragment) -> str:
        source, query, _ = self._parts(fragment)
        columns = ", ".join(p.sql("duckdb") for p in query.expressions)
        text = f"scan iceberg table {source.name!r} [{columns}]"
        where = query.args.get("where")
        if where is not None:
            _filter(where.this)  # what pyiceberg is handed; raises if it cannot be
            text += f" row_filter {where.this.sql('duckdb')}"
        return text

    def run(self, fragment: Fragment) -> pa.Table:
        source, query, columns = self._parts(fragment)
        where = query.args.get("where")
        table = _load(self._catalog(source), source.name)
        if where is None:
            data = self._scan(source, table, AlwaysTrue(), columns)
            names = [item.alias_or_name for item in query.expressions]
            return pa.table([data.column(c) for c in columns], names=names)
        needed = [*columns, *(c.name for c in where.find_all(exp.Column))]
        try:
            data = self._scan(source, table, _filter(where.this), needed)
        except _Unbound:
            # pyiceberg could not bind a constant to its column's type (a timestamp written
            # as text, say): read without pruning; the filter below is exact either way.
            data = self._scan(source, table, AlwaysTrue(), needed)
        # pyiceberg prunes files and rows; DuckDB then applies the same WHERE to what it
        # returned, so results follow SQL semantics exactly, whatever the scan kept.
        scanned = query.copy()
        relation = scanned.args["from_"].this
        relation.set("this", exp.to_identifier("_iceberg_scan"))
        with duckdb.connect() as con:
            con.register("_iceberg_scan", data)
            try:
                return con.execute(scanned.sql("duckdb")).to_arrow_table()
            except duckdb.Error as exc:
                raise EngineError(
                    f"iceberg: filtering {source.qualified_name} failed: {exc}", engine="iceberg"
                ) from exc

    @staticmethod
    def _scan(
        source: Source, table: Any, row_filter: BooleanExpression, columns: list[str]
    ) -> pa.Table:
        scan = table.scan(row_filter=row_filter, selected_fields=tuple(dict.fromkeys(columns)))
        try:
            result: pa.Table = scan.to_arrow()
        except (ValueError, TypeError) as exc:
            # Binding the filter to the schema is where mistyped constants fail.
            if isinstance(row_filter, AlwaysTrue):
                raise EngineError(
                    f"iceberg: scanning {source.qualified_name} failed: {exc}", engine="iceberg"
                ) from exc
            raise _Unbound(str(exc)) from exc
        except Exception as exc:
            raise EngineError(
                f"iceberg: scanning {source.qualified_name} failed: {exc}", engine="iceberg"
            ) from exc
        return result

    def _catalog(self, source: Source) -> SqlCatalog:
        if source.system not in self._catalogs:
            self._catalogs[source.system] = open_catalog(source.location, source.options, self._env)
        return self._catalogs[source.system]


def _constant(node: Any) -> Any:
    if isinstance(node, exp.Paren):
        return _constant(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.Neg):
        return -_constant(node.this)
    raise EngineError(
        f"the iceberg engine compares columns with constants, not {node.sql('duckdb')}",
        engine="iceberg",
    )


# pyiceberg's predicates take (term, value) positionally; their stubs only know keywords.
_IS_NULL: Callable[[str], BooleanExpression] = IsNull  # type: ignore[assignment]
_NOT_NULL: Callable[[str], BooleanExpression] = NotNull  # type: ignore[assignment]
_IN: Callable[[str, set[Any]], BooleanExpression] = In  # type: ignore[assignment]
_GTE: Callable[[str, Any], BooleanExpression] = GreaterThanOrEqual  # type: ignore[assignment]
_LTE: Callable[[str, Any], BooleanExpression] = LessThanOrEqual  # type: ignore[assignment]

_COMPARISONS: dict[
    type[exp.Expression], tuple[Callable[..., BooleanExpression], Callable[..., BooleanExpression]]
] = {
    # (column op constant, constant op column)
    exp.EQ: (EqualTo, EqualTo),
    exp.NEQ: (NotEqualTo, NotEqualTo),
    exp.GT: (GreaterThan, LessThan),
    exp.GTE: (GreaterThanOrEqual, LessThanOrEqual),
    exp.LT: (LessThan, GreaterThan),
    exp.LTE: (LessThanOrEqual, GreaterThanOrEqual),
}


def _filter(node: Any) -> BooleanExpression:
    """``node`` as a pyiceberg row filter; EngineError for what it cannot express."""
    if isinstance(node, exp.Paren):
        return _filter(node.this)
    if isinstance(node, exp.And):
        return And(_filter(node.left), _filter(node.right))
    if isinstance(node, exp.Or):
        return Or(_filter(node.left), _filter(node.right))
    if isinstance(node, exp.Not):
        inner = node.this.unnest() if isinstance(node.this, exp.Paren) else node.this
        if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
            return _NOT_NULL(_name(inner.this))
        return Not(_filter(inner))
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return _IS_NULL(_name(node.this))
    if isinstance(node, exp.Between):
        column = _name(node.this)
        return And(
            _GTE(column, _constant(node.args["low"])),
            _LTE(column, _constant(node.args["high"])),
        )
    if isinstance(node, exp.In) and not node.args.get("query"):
        return _IN(_name(node.this), {_constant(v) for v in node.expressions})
    pair = _COMPARISONS.get(type(node))
    if pair is not None and isinstance(node, exp.Binary):
        if isinstance(node.left, exp.Column):
            return pair[0](node.left.name, _constant(node.right))
        if isinstance(node.right, exp.Column):
            return pair[1](node.right.name, _constant(node.left))
    raise EngineError(f"the iceberg engine cannot push down {node.sql('duckdb')}", engine="iceberg")


def _name(node: Any) -> str:
    if isinstance(node, exp.Column):
        return node.name
    raise EngineError(
        f"the iceberg engine tests columns, not {node.sql('duckdb')}", engine="iceberg"
    )
