"""What every engine declares and does: capabilities as data, and running a fragment.

The planner never imports a driver and never branches on an engine's name: it describes a
piece of work as a :class:`Step` and asks ``engine.can_run(step)``; it hands the chosen
engine a :class:`Fragment` (a sqlglot query over relation ids, plus Arrow inputs) and gets
Arrow back.

Lifecycle of an engine: built by :func:`trunkline.engines.open_engines` for one planning
session; :meth:`Engine.render` may be called any number of times (EXPLAIN shows its text);
:meth:`Engine.run` runs a fragment and returns its whole result as one Arrow table;
:meth:`Engine.close` releases connections. An engine is used from one thread at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
from sqlglot import exp

#: Operators a step may need. ``scan`` reads a dataset; the rest are relational operators.
OPERATORS = frozenset(
    {
        "scan",
        "filter",
        "project",
        "join",
        "aggregate",
        "sort",
        "limit",
        "distinct",
        "window",
        "union",
        "subquery",
        "semi_join_keys",
    }
)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a relation's data physically is: a dataset of a catalog system.

    ``columns`` are ``(name, Arrow type)`` in the dataset's order. ``state_of`` is set for
    the current-state view of a Debezium-envelope topic (``state(topic)`` in SQL).
    """

    system: str
    system_kind: str
    location: str
    name: str
    columns: tuple[tuple[str, pa.DataType], ...]
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    state_of: bool = False

    @property
    def qualified_name(self) -> str:
        return f"{self.system}.{self.name}"

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns))


@dataclass(frozen=True, slots=True)
class Step:
    """A piece of a plan as placement asks an engine about it.

    Attributes:
        operators: what it does (see :data:`OPERATORS`).
        functions: SQL functions and expression kinds it evaluates, upper case
            (``LIKE``, ``SUBSTRING``, ``EXTRACT``...).
        reads: the sources it scans itself.
        arrow_inputs: how many inputs arrive as Arrow from other engines.
    """

    operators: frozenset[str]
    functions: frozenset[str] = frozenset()
    reads: tuple[Source, ...] = ()
    arrow_inputs: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an engine can run a step, and if not, the construct that stops it."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


YES = Verdict(True)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can run, as data.

    Attributes:
        operators: relational operators it runs.
        functions: functions it evaluates; None means every function sqlglot can write in
            its dialect (an unknown, dialect-specific function of the query's own dialect is
            then still refused unless listed in ``extra_functions``).
        excluded_functions: functions it cannot run even so.
        reads: catalog system kinds it scans natively.
        own_system_only: it reads only the one system it is bound to (a database server).
        accepts_arrow: it takes Arrow inputs from other engines, so it can run the rest of
            a plan (a coordinator).
        dialect: the sqlglot dialect of the SQL it is sent; None if it takes no SQL.
        extra_functions: dialect-specific functions it knows beyond sqlglot's own.
    """

    operators: frozenset[str]
    functions: frozenset[str] | None
    excluded_functions: frozenset[str] = frozenset()
    reads: frozenset[str] = frozenset()
    own_system_only: bool = False
    accepts_arrow: bool = False
    dialect: str | None = None
    extra_functions: frozenset[str] = frozenset()


def check(capabilities: Capabilities, system: str | None, step: Step) -> Verdict:
    """The verdict of an engine with ``capabilities``, bound to ``system``, on ``step``."""
    missing = sorted(step.operators - capabilities.operators)
    if missing:
        return Verdict(False, f"cannot run {', '.join(missing)}")
    for source in step.reads:
        if source.system_kind not in capabilities.reads:
            return Verdict(False, f"cannot read {source.system_kind} datasets")
        if capabilities.own_system_only and source.system != system:
            return Verdict(False, f"reads only system {system!r}, not {source.system!r}")
    if step.arrow_inputs and not capabilities.accepts_arrow:
        return Verdict(False, "cannot take Arrow inputs from other engines")
    for function in sorted(step.functions):
        if function in capabilities.excluded_functions:
            return Verdict(False, f"cannot run function {function}")
        known = capabilities.functions
        if known is not None and function not in known:
            return Verdict(False, f"cannot run function {function}")
        extra = capabilities.extra_functions
        if function.startswith("ANONYMOUS:") and not ({function[10:], "*"} & extra):
            return Verdict(False, f"does not know function {function[10:].upper()}")
    return YES


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of work for one engine.

    Attributes:
        query: a sqlglot query in trunkline's SQL (DuckDB's dialect) whose tables are
            relation ids: keys of ``sources`` (datasets the engine reads itself) or of
            ``inputs`` (Arrow tables from other engines).
        sources: relation id -> the dataset it stands for.
        inputs: relation id -> Arrow data computed elsewhere (including semi-join key sets,
            one-column tables used as ``col IN (SELECT key FROM id)``).
    """

    query: exp.Query
    sources: Mapping[str, Source] = field(default_factory=dict)
    inputs: Mapping[str, pa.Table] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """An engine trunkline can place steps on. See the module docstring for its lifecycle."""

    #: The engine's name in plans (``duckdb``, ``hub``, ``spark``, or the catalog name of a
    #: database system such as ``shop_db``).
    name: str
    #: What it is (``duckdb``, ``postgres``, ``hub``, ``spark``): the key of its speed
    #: factors in the cost model and in ``trunkline calibrate``.
    kind: str
    #: The catalog system it is bound to (database engines), else None.
    system: str | None
    capabilities: Capabilities

    def can_run(self, step: Step) -> Verdict:
        """Whether this engine can run ``step``; the reason names what stops it."""
        ...

    def render(self, fragment: Fragment) -> str:
        """The exact text this engine is sent for ``fragment`` (SQL, or a scan description)."""
        ...

    def run(self, fragment: Fragment) -> pa.Table:
        """Run ``fragment`` and return its whole result. Raises EngineError."""
        ...

    def close(self) -> None:
        """Release connections; calling it again does nothing."""
        ...


def relation_names(query: exp.Expression) -> set[str]:
    """Names of the tables a query reads (relation ids), CTE names excluded."""
    ctes = {cte.alias_or_name for cte in query.find_all(exp.CTE)}
    return {t.name for t in query.find_all(exp.Table) if t.name and t.name not in ctes}
