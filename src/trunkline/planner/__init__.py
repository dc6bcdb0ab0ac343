"""The federated planner: SQL over catalog names, placed by cost on the hub, DuckDB,
PostgreSQL and Spark, with an EXPLAIN that says why.

Passes, each a function in a module of its name: :func:`bind` (names to relations),
:func:`optimize` (sqlglot's optimizer), ``find_scans`` (what each table's scan may do),
:func:`place` (candidates costed, the cheapest chosen), :func:`execute` (Arrow between
engines), :func:`explain` (text). The planner imports no database driver: it sees engines
through their declared capabilities only.

Example:
    >>> from trunkline.planner import Planner
    >>> planner = Planner(meta, engines, layouts)  # doctest: +SKIP
    >>> plan = planner.plan("select count(*) from orders")  # doctest: +SKIP
    >>> print(explain(plan))  # doctest: +SKIP
"""

from __future__ import annotations

from trunkline.planner.bind import Bound, bind
from trunkline.planner.execute import execute
from trunkline.planner.explain import explain
from trunkline.planner.optimize import optimize
from trunkline.planner.place import place
from trunkline.planner.plan import Actual, Candidate, Plan, PlanStep
from trunkline.planner.planner import Planner

__all__ = [
    "Actual",
    "Bound",
    "Candidate",
    "Plan",
    "PlanStep",
    "Planner",
    "bind",
    "execute",
    "explain",
    "optimize",
    "place",
]
