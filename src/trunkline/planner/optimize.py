"""optimize: qualify, normalise and optimise a bound query with sqlglot's optimizer.

Columns get their table, ``*`` is expanded, subqueries are unnested into joins, predicates
and projections are pushed towards the tables, constants folded. Unknown columns become a
:class:`~trunkline.errors.PlanningError` with a "did you mean".
"""

from __future__ import annotations

import datetime as dt
import difflib
import re

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer import optimize as sqlglot_optimize

from trunkline.errors import PlanningError
from trunkline.planner.bind import DIALECT, Bound

_UNRESOLVED = re.compile(r"Column '?\"?([^'\"]+)\"?'? could not be resolved")
_UNKNOWN_TABLE = re.compile(r"Unknown table: '?\"?([^'\"]+)")


def optimize(bound: Bound) -> exp.Query:
    """The optimised form of ``bound.expression``; the input is left as it is."""
    try:
        schema: dict[str, object] = dict(bound.schema)
        optimized = sqlglot_optimize(bound.expression.copy(), schema=schema, dialect=DIALECT)
    except OptimizeError as exc:
        raise _planning_error(exc, bound) from None
    except SqlglotError as exc:
        raise PlanningError(f"cannot plan this query: {exc}") from None
    folded = optimized.transform(_fold_date_arithmetic)
    assert isinstance(folded, exp.Query)
    return folded


def _fold_date_arithmetic(node: exp.Expression) -> exp.Expression:
    """``DATE '1998-12-01' - INTERVAL '90' DAY`` as the date it is, so that every engine
    (and the estimator) reads a plain date constant."""
    if not isinstance(node, exp.Add | exp.Sub):
        return node
    date, interval = node.this, node.expression
    if not (
        isinstance(date, exp.Cast)
        and date.to.this == exp.DataType.Type.DATE
        and isinstance(date.this, exp.Literal)
        and isinstance(interval, exp.Interval)
        and isinstance(interval.this, exp.Literal)
    ):
        return node
    unit = (interval.unit.name if interval.unit else "day").lower().rstrip("s")
    try:
        day = dt.date.fromisoformat(date.this.name)
        amount = int(interval.this.name)
    except ValueError:
        return node
    amount = -amount if isinstance(node, exp.Sub) else amount
    if unit == "day":
        result = day + dt.timedelta(days=amount)
    elif unit in ("month", "year"):
        months = amount * (12 if unit == "year" else 1)
        total = day.year * 12 + day.month - 1 + months
        year, month = divmod(total, 12)
        try:
            result = day.replace(year=year, month=month + 1)
        except ValueError:
            return node  # no such day in that month: leave it to the engines
    else:
        return node
    return exp.cast(exp.Literal.string(result.isoformat()), exp.DataType.build("DATE"))


def _planning_error(exc: OptimizeError, bound: Bound) -> PlanningError:
    message = str(exc)
    known = sorted({name for rel in bound.relations.values() for name, _ in rel.columns})
    found = _UNRESOLVED.search(message)
    if found:
        column = found.group(1).split(".")[-1]
        close = difflib.get_close_matches(column, known, n=3, cutoff=0.6)
        hint = ("; did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""
        tables = ", ".join(sorted(rel.name for rel in bound.relations.values()))
        return PlanningError(
            f"unknown column {column!r} (tables in the query: {tables}){hint}",
            construct=column,
        )
    found = _UNKNOWN_TABLE.search(message)
    if found:
        return PlanningError(
            f"unknown table or alias {found.group(1)!r} in a column reference",
            construct=found.group(1),
        )
    return PlanningError(f"cannot plan this query: {message}")
