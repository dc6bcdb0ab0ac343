"""bind: parse SQL and resolve its names against the catalog.

Every table name becomes a relation id (``t_pg_public_orders``) whose parts and statistics
the planner knows; views are expanded (a view that is a ``UNION ALL`` of whole datasets with
the same columns becomes one tiered relation, any other view a subquery); ``state(topic)``
binds the current state of a Debezium topic. Unknown and ambiguous names are errors with a
"did you mean".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from trunkline.errors import PlanningError
from trunkline.planner.catalog import Catalog, Relation, check_tiers

#: trunkline's SQL is DuckDB's dialect.
DIALECT = "duckdb"
_VIEW_DEPTH = 8


@dataclass
class Bound:
    """A query whose names are bound to relations."""

    sql: str
    expression: exp.Query
    relations: dict[str, Relation] = field(default_factory=dict)

    @property
    def schema(self) -> dict[str, dict[str, str]]:
        """Column types by relation id, for sqlglot's optimizer."""
        from trunkline.engines._types import sql_type

        return {
            rid: {name: sql_type(kind) for name, kind in rel.columns}
            for rid, rel in self.relations.items()
        }


def parse(sql: str) -> exp.Query:
    """Parse one query of trunkline's SQL.

    Raises:
        PlanningError: not SQL, several statements, or not a query.
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        errors = exc.errors[0] if exc.errors else {}
        where = (
            f" at line {errors.get('line')}, column {errors.get('col')}"
            if errors.get("line")
            else ""
        )
        detail = errors.get("description") or str(exc).splitlines()[0]
        raise PlanningError(f"invalid SQL{where}: {detail}") from None
    if len(statements) != 1:
        raise PlanningError(f"expected one query, found {len(statements)} statements")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise PlanningError(
            f"only queries can be planned, not {statement.key.upper()} statements: write "
            "SELECT ..., and use a flow's 'into:' to write results",
            construct=statement.key.upper(),
        )
    return statement


def _name_of(table: exp.Table) -> str:
    return ".".join(part.name for part in table.parts)


class _Binder:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.relations: dict[str, Relation] = {}
        self._ids: dict[str, str] = {}

    def _relation_id(self, key: str) -> str:
        if key not in self._ids:
            base = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", key).strip("_").lower()
            candidate, n = base, 1
            while candidate in self.relations:
                n += 1
                candidate = f"{base}_{n}"
            self._ids[key] = candidate
        return self._ids[key]

    def bind(self, query: exp.Query, depth: int = 0) -> exp.Query:
        if depth > _VIEW_DEPTH:
            raise PlanningError("views nest more than 8 deep (is a view defined by itself?)")
        ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
        for table in list(query.find_all(exp.Table)):
            replacement = self._table(table, ctes, depth)
            if replacement is not None:
                table.replace(replacement)
        return query

    def _table(self, table: exp.Table, ctes: set[str], depth: int) -> exp.Expression | None:
        function = table.this
        if isinstance(function, exp.Anonymous):
            return self._function_table(table, function)
        if isinstance(function, exp.Func | exp.Anonymous) or not table.name:
            raise PlanningError(
                f"table function {table.sql(DIALECT)} is not supported; the one table "
                "function is state(topic)",
                construct=table.sql(DIALECT),
            )
        name = _name_of(table)
        if not table.args.get("db") and name.lower() in ctes:
            return None
        alias = table.alias or table.name
        dataset = self.catalog.dataset(name)
        if dataset.kind.value == "view":
            sql = self.catalog.view_sql(dataset)
            if sql is not None:
                return self._view(dataset.qualified_name, sql, alias, depth)
        key = dataset.qualified_name
        rid = self._relation_id(key)
        if rid not in self.relations:
            source = self.catalog.source(dataset)
            self.relations[rid] = Relation(
                rid, key, (source,), (self.catalog.stats(dataset, source),)
            )
        return exp.Table(
            this=exp.to_identifier(rid), alias=exp.TableAlias(this=exp.to_identifier(alias))
        )

    def _function_table(self, table: exp.Table, function: exp.Anonymous) -> exp.Expression:
        if function.name.lower() != "state" or len(function.expressions) != 1:
            raise PlanningError(
                f"unknown table function {function.name}(); the one table function is "
                "state(topic), the current state of a Debezium change topic",
                construct=function.name,
            )
        argument = function.expressions[0]
        if isinstance(argument, exp.Column | exp.Literal | exp.Dot):
            name = argument.name if isinstance(argument, exp.Literal) else argument.sql(DIALECT)
            name = name.replace('"', "")
        else:
            raise PlanningError("state() takes a topic name", construct="state")
        dataset = self.catalog.dataset(name)
        key = f"state({dataset.qualified_name})"
        rid = self._relation_id(key)
        if rid not in self.relations:
            source = self.catalog.source(dataset, state=True)
            self.relations[rid] = Relation(
                rid, key, (source,), (self.catalog.stats(dataset, source),)
            )
        alias = table.alias or dataset.name.rpartition(".")[2]
        return exp.Table(
            this=exp.to_identifier(rid), alias=exp.TableAlias(this=exp.to_identifier(alias))
        )

    def _view(self, name: str, sql: str, alias: str, depth: int) -> exp.Expression:
        query = parse(sql)
        tiers = _tiers(query)
        if tiers is not None:
            rid = self._relation_id(name)
            if rid not in self.relations:
                parts = []
                stats = []
                for part_name in tiers:
                    dataset = self.catalog.dataset(part_name)
                    source = self.catalog.source(dataset)
                    parts.append((dataset.qualified_name, source))
                    stats.append(self.catalog.stats(dataset, source))
                sources = check_tiers(name, parts)
                self.relations[rid] = Relation(rid, name, sources, tuple(stats))
            return exp.Table(
                this=exp.to_identifier(rid), alias=exp.TableAlias(this=exp.to_identifier(alias))
            )
        bound = self.bind(query, depth + 1)
        return exp.Subquery(this=bound, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _tiers(query: exp.Query) -> list[str] | None:
    """The dataset names of a view that is ``SELECT * FROM a UNION ALL SELECT * FROM b ...``."""
    if not isinstance(query, exp.Union) or query.args.get("distinct"):
        return None
    names: list[str] = []
    for side in (query.left, query.right):
        if isinstance(side, exp.Union):
            inner = _tiers(side)
            if inner is None:
                return None
            names += inner
            continue
        used = {key for key, value in side.args.items() if value}
        if not isinstance(side, exp.Select) or used - {"expressions", "from_"}:
            return None
        if [type(e) for e in side.expressions] != [exp.Star]:
            return None
        source = side.args["from_"].this
        if not isinstance(source, exp.Table) or not source.name:
            return None
        names.append(_name_of(source))
    return names


def bind(sql: str, catalog: Catalog) -> Bound:
    """Parse ``sql`` and bind its table names to catalog relations.

    Raises:
        PlanningError: bad SQL, unknown or ambiguous names, types that differ across the
            parts of a tiered view.
    """
    query = parse(sql)
    binder = _Binder(catalog)
    bound = binder.bind(query)
    _name_outputs(bound)
    return Bound(sql, bound, binder.relations)


def _name_outputs(query: exp.Query) -> None:
    """Alias unnamed result columns with their text, so that optimizing does not rename them."""
    select = query if isinstance(query, exp.Select) else None
    if select is None:
        return
    for item in select.expressions:
        if isinstance(item, exp.Alias | exp.Column | exp.Star):
            continue
        item.replace(exp.alias_(item.copy(), item.sql(DIALECT), quoted=True))


def bind_view(name: str, sql: str, catalog: Catalog) -> Bound:
    """Bind ``SELECT * FROM`` view ``name`` defined as ``sql`` (to check a view before it is
    stored: its names, and for a tiered view its parts' columns and types)."""
    binder = _Binder(catalog)
    table = binder._view(name, sql, name.rpartition(".")[2], 0)
    query = exp.select("*").from_(table)
    return Bound(sql, query, binder.relations)
