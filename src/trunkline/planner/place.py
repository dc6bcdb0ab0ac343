"""place: choose where every step of a query runs, by cost.

Candidates, each costed by :func:`build_steps` with the calibrated speed factors:

* every engine that can run the whole query's operators and functions is a possible
  coordinator; it reads in place what it can read, and every other part of a table is
  scanned by an engine that holds it, with the filters and projections that engine can run;
* tables of one SELECT that one non-coordinating engine holds, joined by equality, may join
  there (a *group*) — or be scanned apart and joined by the coordinator: both are costed,
  never "always push down";
* a scan may be reduced by the distinct join keys of a smaller side (semi-join reduction),
  kept only where the model says it pays.

The cheapest candidate wins. Placement asks engines what they can run (``can_run``); it
never looks at their names.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pyarrow as pa
from sqlglot import exp

from trunkline.engines.base import Engine, Fragment, Step
from trunkline.errors import PlanningError
from trunkline.planner._context import Context, functions_of, operators_of
from trunkline.planner.bind import Bound
from trunkline.planner.build_steps import MAX_KEYS, Built, Choice, Group, SemiJoin, build_steps
from trunkline.planner.cost import CostModel
from trunkline.planner.find_scans import find_scans
from trunkline.planner.plan import Candidate, Plan

#: At most this many groups are combined exhaustively (2^n candidates per coordinator).
MAX_GROUPS = 4


def _label(ctx: Context, choice: Choice) -> str:
    parts = [f"{choice.coordinator} coordinates"]
    for group in choice.groups:
        names = "+".join(ctx.occurrence(m).alias for m in group.members)
        parts.append(f"join {names} in {group.engine}")
    for sj in choice.semijoins:
        parts.append(
            f"keys of {ctx.occurrence(sj.source).alias} reduce {ctx.occurrence(sj.target).alias}"
        )
    return "; ".join(parts)


class _Placer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.candidates: list[tuple[Choice, Built]] = []
        self.refused: list[str] = []

    def coordinators(self) -> list[Engine]:
        ctx = self.ctx
        tree = ctx.tree
        operators, functions = operators_of(tree), functions_of(tree)
        parts = [p for o in ctx.scans.occurrences for p in o.relation.parts]
        found = []
        for engine in ctx.engines:
            step = Step(operators, functions)
            verdict = ctx.can_run(engine, step)
            if not verdict:
                self.refused.append(f"{engine.name} {verdict.reason}")
                continue
            unread = [
                p
                for p in parts
                if not ctx.can_run(engine, Step(frozenset({"scan", "project"}), reads=(p,)))
            ]
            if unread and not engine.capabilities.accepts_arrow:
                continue
            if any(not ctx.readers(p) for p in unread):
                missing = next(p for p in unread if not ctx.readers(p))
                raise PlanningError(
                    f"no engine can read {missing.qualified_name} ({missing.system_kind})",
                    construct=missing.qualified_name,
                )
            found.append(engine)
        if not found:
            raise PlanningError(
                "no engine can run this query: " + "; ".join(self.refused),
                construct=self.refused[0] if self.refused else None,
            )
        return found

    def base_scans(self, coordinator: Engine) -> dict[tuple[int, int], str]:
        ctx = self.ctx
        chosen = {}
        for occ in ctx.scans.occurrences:
            for part, source in enumerate(occ.relation.parts):
                readers = ctx.readers(source)
                if coordinator in readers:
                    chosen[(occ.index, part)] = coordinator.name
                else:
                    best = min(readers, key=lambda e: ctx.factors(e).transfer_row)
                    chosen[(occ.index, part)] = best.name
        return chosen

    def groups(self, coordinator: Engine, scans: dict[tuple[int, int], str]) -> list[Group]:
        ctx = self.ctx
        engines = {e.name: e for e in ctx.engines}
        found = []
        by_scope: dict[tuple[int, str], list[int]] = {}
        for occ in ctx.scans.occurrences:
            holder = scans[(occ.index, 0)]
            if len(occ.relation.parts) == 1 and occ.inner and holder != coordinator.name:
                by_scope.setdefault((occ.scope, holder), []).append(occ.index)
        for (scope, engine_name), members in by_scope.items():
            aliases = {ctx.occurrence(m).alias: m for m in members}
            edges = [
                c
                for c in ctx.scans.conditions
                if c.scope == scope and c.left[0] in aliases and c.right[0] in aliases
            ]
            # Connected components over the equi-join edges.
            component = {alias: alias for alias in aliases}

            def root(alias: str, component: dict[str, str] = component) -> str:
                while component[alias] != alias:
                    alias = component[alias]
                return alias

            for edge in edges:
                component[root(edge.left[0])] = root(edge.right[0])
            clusters: dict[str, list[str]] = {}
            for alias in aliases:
                clusters.setdefault(root(alias), []).append(alias)
            engine = engines[engine_name]
            for cluster in clusters.values():
                if len(cluster) < 2:
                    continue
                member_ids = tuple(sorted(aliases[a] for a in cluster))
                conditions = tuple(
                    c.id for c in edges if c.left[0] in cluster and c.right[0] in cluster
                )
                occs = [ctx.occurrence(m) for m in member_ids]
                step = Step(
                    frozenset({"scan", "project", "filter", "join"}),
                    frozenset().union(
                        *(functions_of(exp.and_(*o.pushable)) for o in occs if o.pushable)
                    ),
                    reads=tuple(o.relation.parts[0] for o in occs),
                )
                verdict = ctx.can_run(engine, step)
                if verdict:
                    found.append(Group(engine_name, scope, member_ids, conditions))
                else:
                    names = ", ".join(cluster)
                    ctx.notes.append(
                        f"join of {names} not pushed to {engine_name}: {verdict.reason}"
                    )
        return found[:MAX_GROUPS]

    def semijoins(self, coordinator: Engine, choice: Choice) -> list[SemiJoin]:
        ctx = self.ctx
        engines = {e.name: e for e in ctx.engines}
        scans = dict(choice.scans)
        grouped = {m: g for g in choice.groups for m in g.members}
        found = []
        for condition in ctx.scans.conditions:
            for target_side, source_side in (
                (condition.left, condition.right),
                (condition.right, condition.left),
            ):
                target = next(
                    (
                        o
                        for o in ctx.scans.occurrences
                        if o.scope == condition.scope and o.alias == target_side[0]
                    ),
                    None,
                )
                source = next(
                    (
                        o
                        for o in ctx.scans.occurrences
                        if o.scope == condition.scope and o.alias == source_side[0]
                    ),
                    None,
                )
                if target is None or source is None or not target.inner:
                    continue
                remote = [
                    part
                    for part in range(len(target.relation.parts))
                    if scans[(target.index, part)] != coordinator.name
                ]
                if not remote:
                    continue
                # Can every remote part's engine filter by a key set?
                ok = all(
                    ctx.can_run(
                        engines[scans[(target.index, part)]],
                        Step(
                            frozenset({"scan", "filter", "semi_join_keys"}),
                            reads=(target.relation.parts[part],),
                        ),
                    )
                    for part in remote
                )
                if not ok:
                    continue
                source_rows = sum(
                    ctx.filtered_rows(source, p, list(source.pushable))
                    for p in range(len(source.relation.parts))
                )
                keys = sum(s.distinct(source_side[1], source_rows) for s in source.relation.stats)
                target_rows = sum(
                    ctx.filtered_rows(target, p, list(target.pushable)) for p in remote
                )
                if keys > MAX_KEYS or source_rows >= target_rows:
                    continue
                if (
                    target.index in grouped
                    and source.index in grouped.get(target.index, Group("", 0, (), ())).members
                ):
                    continue
                found.append(SemiJoin(target.index, target_side[1], source.index, source_side[1]))
        return found

    def run(self) -> tuple[Choice, Built]:
        for coordinator in self.coordinators():
            scans = self.base_scans(coordinator)
            groups = self.groups(coordinator, scans)
            for size in range(len(groups) + 1):
                for subset in itertools.combinations(groups, size):
                    choice = Choice(coordinator.name, tuple(sorted(scans.items())), subset)
                    built = self._cost(choice)
                    choice, built = self._reduce(coordinator, choice, built)
                    del built
        if not self.candidates:
            raise PlanningError("no placement could be built for this query")
        return min(self.candidates, key=lambda c: c[1].seconds)

    def _cost(self, choice: Choice) -> Built:
        built = build_steps(self.ctx, choice)
        self.candidates.append((choice, built))
        return built

    def _reduce(self, coordinator: Engine, choice: Choice, built: Built) -> tuple[Choice, Built]:
        """Add semi-joins one at a time while each makes the plan cheaper."""
        for sj in self.semijoins(coordinator, choice):
            targets = {s.target for s in choice.semijoins}
            sources = {s.source for s in choice.semijoins}
            group_of = {m: g for g in choice.groups for m in g.members}
            if sj.target in targets or sj.target in sources or sj.source in targets:
                continue
            if sj.source in group_of and targets & set(group_of[sj.source].members):
                continue
            if sj.target in group_of and (
                targets & set(group_of[sj.target].members)
                or sj.source in group_of[sj.target].members
            ):
                continue
            trial = Choice(choice.coordinator, choice.scans, choice.groups, (*choice.semijoins, sj))
            costed = self._cost(trial)
            if costed.seconds < built.seconds:
                choice, built = trial, costed
        return choice, built


def place(bound: Bound, optimized: exp.Query, engines: Sequence[Engine], costs: CostModel) -> Plan:
    """Place ``optimized`` (the optimised form of ``bound``) on ``engines``.

    Raises:
        PlanningError: no engine can run a construct of the query, or read one of its tables.
    """
    tree = optimized.copy()
    scans = find_scans(tree, bound.relations)
    ctx = Context(tree, scans, bound.relations, engines, costs)
    placer = _Placer(ctx)
    choice, built = placer.run()
    engines_by_name = {e.name: e for e in engines}
    for step in built.steps:
        inputs = {
            relation: pa.table({"key": pa.array([], pa.int64())})
            for relation in step.inputs.values()
        }
        step.text = engines_by_name[step.engine].render(Fragment(step.query, step.sources, inputs))
    final = built.steps[-1]
    costs_seen: dict[str, Candidate] = {}
    for candidate_choice, candidate in placer.candidates:
        label = _label(ctx, candidate_choice)
        if label not in costs_seen or candidate.seconds < costs_seen[label].seconds:
            costs_seen[label] = Candidate(label, candidate.seconds, candidate_choice == choice)
    candidates = sorted(costs_seen.values(), key=lambda c: c.seconds)
    others = [c for c in candidates if not c.chosen]
    final.reason = (
        f"{final.engine} runs the rest of the query"
        + (f" over {len(final.inputs)} input(s) from other engines" if final.inputs else "")
        + (
            f"; cheapest of {len(candidates)} placements (next: {others[0].name}, "
            f"~{others[0].seconds:.3f} s)"
            if others
            else ""
        )
        + (
            "; " + "; ".join(f"not a coordinator: {r}" for r in placer.refused)
            if placer.refused
            else ""
        )
    )
    not_pushed = list(dict.fromkeys(built.not_pushed + ctx.notes))
    if any(s.role in ("scan", "join") for s in built.steps):
        for kind, what in (
            (exp.Group, "aggregation"),
            (exp.Order, "ORDER BY"),
            (exp.Limit, "LIMIT"),
        ):
            if isinstance(tree, exp.Select) and tree.args.get(kind.key) is not None:
                not_pushed.append(
                    f"{what} runs on {final.engine}: it needs data from more than one engine"
                )
    statistics = []
    for relation in bound.relations.values():
        for part, stats in zip(relation.parts, relation.stats, strict=True):
            statistics.append(
                {
                    "dataset": part.qualified_name if len(relation.parts) > 1 else relation.name,
                    "rows": round(stats.rows),
                    "rows_from": stats.origin,
                    "columns_from": stats.column_origin,
                }
            )
    for engine in {engines_by_name[s.engine] for s in built.steps}:
        statistics.append(
            {
                "engine": engine.name,
                "speed_factors_from": costs.origin(engine.name, engine.kind),
            }
        )
    names = final.query.named_selects if isinstance(final.query, exp.Query) else []
    return Plan(
        sql=bound.sql,
        optimized=optimized.sql("duckdb"),
        steps=built.steps,
        candidates=candidates,
        not_pushed=not_pushed,
        statistics=sorted(statistics, key=lambda s: s.get("dataset") or "~" + s.get("engine", "")),
        output_names=list(names),
    ).finish()
