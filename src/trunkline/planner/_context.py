"""What the placement passes share: the tagged query, its scans, the engines, estimates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from trunkline.engines.base import Engine, Source, Step, Verdict
from trunkline.planner.catalog import Relation
from trunkline.planner.cost import CostModel, SpeedFactors
from trunkline.planner.find_scans import Occurrence, Scans
from trunkline.planner.statistics import Estimator

#: Node kinds that are structure, not functions an engine must know.
STRUCTURAL = frozenset(
    {
        "column",
        "identifier",
        "table",
        "tablealias",
        "alias",
        "literal",
        "star",
        "paren",
        "select",
        "from",
        "where",
        "join",
        "group",
        "order",
        "ordered",
        "limit",
        "offset",
        "having",
        "with",
        "cte",
        "subquery",
        "union",
        "intersect",
        "except",
        "datatype",
        "datatypeparam",
        "boolean",
        "null",
        "tuple",
        "distinct",
        "var",
        "dot",
        "placeholder",
        "window",
        "windowspec",
        "unit",
        "true",
        "false",
    }
)


def functions_of(node: exp.Expr | None) -> frozenset[str]:
    """The functions and expression kinds an engine must evaluate to run ``node``."""
    if node is None:
        return frozenset()
    found = set()
    for inner in node.walk():
        if isinstance(inner, exp.Anonymous):
            found.add(f"ANONYMOUS:{inner.name.lower()}")
        elif inner.key not in STRUCTURAL:
            found.add(inner.key.upper())
    return frozenset(found)


def operators_of(node: exp.Expr) -> frozenset[str]:
    """The relational operators running ``node`` needs."""
    found = {"scan", "project"}
    checks = {
        "filter": (exp.Where, exp.Having),
        "join": (exp.Join,),
        "aggregate": (exp.Group, exp.AggFunc),
        "sort": (exp.Order,),
        "limit": (exp.Limit,),
        "distinct": (exp.Distinct,),
        "window": (exp.Window,),
        "union": (exp.Union, exp.Intersect, exp.Except),
        "subquery": (exp.Subquery, exp.CTE),
    }
    for operator, kinds in checks.items():
        if node.find(*kinds) is not None:
            found.add(operator)
    return frozenset(found)


def describe(engine: Engine) -> str:
    return engine.name


@dataclass
class Context:
    """Everything one placement works from; built once per query."""

    tree: exp.Query
    scans: Scans
    relations: dict[str, Relation]
    engines: Sequence[Engine]
    costs: CostModel
    notes: list[str] = field(default_factory=list)
    _verdicts: dict[tuple[str, Step], Verdict] = field(default_factory=dict)

    def can_run(self, engine: Engine, step: Step) -> Verdict:
        key = (engine.name, step)
        if key not in self._verdicts:
            self._verdicts[key] = engine.can_run(step)
        return self._verdicts[key]

    def factors(self, engine: Engine) -> SpeedFactors:
        return self.costs.factors(engine.name, engine.kind)

    def occurrence(self, index: int) -> Occurrence:
        return self.scans.occurrences[index]

    def part_id(self, occurrence: Occurrence, part: int) -> str:
        """The relation id of one part: the relation's own id unless it is tiered."""
        rid = occurrence.relation.id
        return rid if len(occurrence.relation.parts) == 1 else f"{rid}_p{part}"

    def readers(self, source: Source) -> list[Engine]:
        step = Step(frozenset({"scan", "project"}), reads=(source,))
        return [e for e in self.engines if self.can_run(e, step)]

    def pushable_on(
        self, engine: Engine, occurrence: Occurrence, part: int
    ) -> tuple[list[exp.Expression], list[tuple[exp.Expression, str]]]:
        """The conjuncts ``engine`` applies while scanning a part, and those it cannot."""
        source = occurrence.relation.parts[part]
        pushed, refused = [], []
        for condition in occurrence.pushable:
            step = Step(
                frozenset({"scan", "project", "filter"}),
                functions_of(condition),
                reads=(source,),
            )
            verdict = self.can_run(engine, step)
            if verdict:
                pushed.append(condition)
            else:
                refused.append((condition, verdict.reason))
        return pushed, refused

    def estimator(self, occurrence: Occurrence, part: int) -> Estimator:
        return Estimator({occurrence.alias: occurrence.relation.stats[part]})

    def filtered_rows(
        self, occurrence: Occurrence, part: int, conditions: list[exp.Expression]
    ) -> float:
        stats = occurrence.relation.stats[part]
        estimator = self.estimator(occurrence, part)
        rows = stats.rows
        for condition in conditions:
            rows *= estimator.selectivity(condition)
        return max(rows, 1.0) if stats.rows >= 1 else 0.0
