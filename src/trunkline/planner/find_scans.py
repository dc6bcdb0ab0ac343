"""find_scans: every table of an optimised query, with what its scan may do on its own.

For each occurrence of a relation (a table with its alias in one SELECT): the columns the
query uses, the conjuncts that may filter its scan before any join (outer-join rules
respected: a WHERE condition on the null-supplying side of a LEFT JOIN must not), and the
equi-join conditions of its SELECT. Nodes are tagged in ``meta`` so that rewritten copies
of the query can still find them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from trunkline.planner.catalog import Relation

#: ``meta`` keys: a table's occurrence index, a column's (scope, alias), a join condition's
#: id, and the occurrence a pushable conjunct filters.
OCCURRENCE = "tl_occurrence"
REFERENCE = "tl_reference"
CONDITION = "tl_condition"
PUSHABLE = "tl_pushable"


@dataclass
class Occurrence:
    """One table of the query."""

    index: int
    alias: str
    relation: Relation
    scope: int
    columns: list[str]
    pushable: list[exp.Expression]
    #: May join with other tables of its SELECT inside one engine (inner joins only).
    inner: bool


@dataclass
class JoinCondition:
    """``left.column = right.column`` between two tables of one SELECT (inner joins)."""

    id: int
    scope: int
    left: tuple[str, str]  # alias, column
    right: tuple[str, str]


@dataclass
class Scans:
    """What :func:`find_scans` found."""

    occurrences: list[Occurrence] = field(default_factory=list)
    conditions: list[JoinCondition] = field(default_factory=list)


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.Where):
        node = node.this
    if not isinstance(node, exp.And):
        return [node]
    return [n for n in node.flatten() if isinstance(n, exp.Expression)]


def _only(condition: exp.Expression, alias: str) -> bool:
    """Whether ``condition`` reads only columns of ``alias``, and no subquery or aggregate."""
    columns = list(condition.find_all(exp.Column))
    if not columns or any(c.table != alias for c in columns):
        return False
    return condition.find(exp.Select, exp.AggFunc, exp.Window, exp.Rand) is None


def _children(scope: Scope) -> list[Scope]:
    found = []
    for child in scope.subquery_scopes + scope.udtf_scopes:
        found.append(child)
        found.extend(_children(child))
    return found


def find_scans(query: exp.Expr, relations: dict[str, Relation]) -> Scans:
    """Tag and describe every table of ``query`` that is a catalog relation."""
    scans = Scans()
    for scope_index, scope in enumerate(traverse_scope(query)):
        select = scope.expression
        if not isinstance(select, exp.Select):
            continue
        tables = {
            alias: source
            for alias, source in scope.sources.items()
            if isinstance(source, exp.Table) and source.name in relations
        }
        if not tables:
            continue
        for column in scope.columns:
            if column.table in tables:
                column.meta[REFERENCE] = (scope_index, column.table)
        for child in _children(scope):
            for column in child.external_columns:
                if column.table in tables:
                    column.meta[REFERENCE] = (scope_index, column.table)
        joins = select.args.get("joins") or []
        outer_all = any(j.side in ("RIGHT", "FULL") for j in joins)
        null_side = {
            j.this.alias_or_name for j in joins if j.side == "LEFT" or j.kind in ("SEMI", "ANTI")
        }
        where = conjuncts(select.args.get("where"))
        inner_on = [
            c for j in joins if not j.side and not j.kind for c in conjuncts(j.args.get("on"))
        ]
        own_on = {
            j.this.alias_or_name: conjuncts(j.args.get("on"))
            for j in joins
            if j.side in ("", "LEFT") and j.kind in ("", "SEMI", "ANTI")
        }
        for alias, table in tables.items():
            used: list[str] = []
            for column in [
                *scope.columns,
                *(c for ch in _children(scope) for c in ch.external_columns),
            ]:
                if column.table == alias and column.name not in used:
                    used.append(column.name)
            pushable: list[exp.Expression] = []
            if not outer_all:
                candidates = list(own_on.get(alias, []))
                if alias not in null_side:
                    candidates += where + inner_on
                for condition in candidates:
                    if _only(condition, alias) and all(condition is not p for p in pushable):
                        pushable.append(condition)
            index = len(scans.occurrences)
            table.meta[OCCURRENCE] = index
            for position, condition in enumerate(pushable):
                condition.meta[PUSHABLE] = (index, position)
            scans.occurrences.append(
                Occurrence(
                    index=index,
                    alias=alias,
                    relation=relations[table.name],
                    scope=scope_index,
                    columns=used,
                    pushable=pushable,
                    inner=not outer_all and alias not in null_side,
                )
            )
        if outer_all:
            continue
        for condition in where + inner_on:
            if (
                isinstance(condition, exp.EQ)
                and isinstance(condition.this, exp.Column)
                and isinstance(condition.expression, exp.Column)
                and condition.this.table in tables
                and condition.expression.table in tables
                and condition.this.table != condition.expression.table
                and condition.this.table not in null_side
                and condition.expression.table not in null_side
            ):
                condition_id = len(scans.conditions)
                condition.meta[CONDITION] = condition_id
                scans.conditions.append(
                    JoinCondition(
                        condition_id,
                        scope_index,
                        (condition.this.table, condition.this.name),
                        (condition.expression.table, condition.expression.name),
                    )
                )
    return scans
