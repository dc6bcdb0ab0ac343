"""build_steps: turn one placement choice into steps with their SQL and estimated costs.

A choice says which engine scans each part of each table, which same-engine tables join
inside their source (a group), which scans are reduced by the keys of a smaller side
(semi-joins), and which engine runs the rest (the coordinator). The coordinator's query is
the optimised query with each table replaced by what stands for it: the table itself when
the coordinator reads it, a fragment's Arrow result otherwise, a ``UNION ALL`` of the parts
of a tiered table. Conjuncts that every part's scan applies are dropped from the
coordinator's query, so that columns used only to filter never cross an engine boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from trunkline.engines.base import Engine, Source
from trunkline.planner._context import Context
from trunkline.planner.find_scans import CONDITION, OCCURRENCE, PUSHABLE, REFERENCE, Occurrence
from trunkline.planner.plan import PlanStep
from trunkline.planner.statistics import join_rows

#: More semi-join keys than this and the filter is dropped at run time.
MAX_KEYS = 500_000


@dataclass(frozen=True, slots=True)
class Group:
    """Tables of one SELECT joined inside the engine that holds them all."""

    engine: str
    scope: int
    members: tuple[int, ...]
    conditions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SemiJoin:
    """Filter ``target``'s scan by the keys of ``source`` (``target.column IN keys``)."""

    target: int
    target_column: str
    source: int
    source_column: str


@dataclass(frozen=True, slots=True)
class Choice:
    """One placement: coordinator, the engine of every (occurrence, part), groups, semi-joins."""

    coordinator: str
    scans: tuple[tuple[tuple[int, int], str], ...]
    groups: tuple[Group, ...] = ()
    semijoins: tuple[SemiJoin, ...] = ()

    def engine_of(self, occurrence: int, part: int) -> str:
        return dict(self.scans)[(occurrence, part)]


@dataclass
class Built:
    """The steps of a choice and their estimated total seconds."""

    steps: list[PlanStep]
    seconds: float
    not_pushed: list[str] = field(default_factory=list)


def _true() -> exp.Expression:
    return exp.true()


def _column(name: str, table: str) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _and(conditions: list[exp.Expression]) -> exp.Expression | None:
    conditions = [c for c in conditions if c is not None]
    if not conditions:
        return None
    if len(conditions) == 1:
        return conditions[0]
    combined = exp.and_(*conditions, copy=False)
    assert isinstance(combined, exp.Expression)
    return combined


class _Builder:
    def __init__(self, ctx: Context, choice: Choice) -> None:
        self.ctx = ctx
        self.choice = choice
        self.engines = {e.name: e for e in ctx.engines}
        self.coordinator = self.engines[choice.coordinator]
        self.tree = ctx.tree.copy()
        self.steps: list[PlanStep] = []
        self.not_pushed: list[str] = []
        self.group_of: dict[int, int] = {}
        for index, group in enumerate(choice.groups):
            for member in group.members:
                self.group_of[member] = index
        # Per occurrence: the step ids its fragments come from, and its replacement.
        self.fragments: dict[int, list[str]] = {}
        self.semijoin_of = {sj.target: sj for sj in choice.semijoins}
        self.rows_into_coordinator = 0.0
        self.native_bytes = 0.0
        self.filtered: dict[int, float] = {}

    # -- helpers -------------------------------------------------------------------------

    def _engine(self, occurrence: int, part: int) -> Engine:
        return self.engines[self.choice.engine_of(occurrence, part)]

    def _native(self, occurrence: int, part: int) -> bool:
        return self._engine(occurrence, part) is self.coordinator

    def _pushed(self, occurrence: Occurrence, part: int, engine: Engine) -> list[exp.Expression]:
        pushed, refused = self.ctx.pushable_on(engine, occurrence, part)
        for condition, reason in refused:
            self.not_pushed.append(
                f"{condition.sql('duckdb')} not pushed to {engine.name} for "
                f"{occurrence.relation.name}: {engine.name} {reason}"
            )
        return pushed

    def _applied_everywhere(self, occurrence: Occurrence, position: int) -> bool:
        """Whether every part's scan applies conjunct ``position`` of ``occurrence``."""
        index = occurrence.index
        condition = occurrence.pushable[position]
        if index in self.group_of:
            group = self.choice.groups[self.group_of[index]]
            return condition in self.ctx.pushable_on(self.engines[group.engine], occurrence, 0)[0]
        parts = range(len(occurrence.relation.parts))
        if len(occurrence.relation.parts) == 1 and self._native(index, 0):
            return False  # the coordinator reads it in place and filters there
        for part in parts:
            if self._native(index, part):
                continue  # a UNION ALL branch the coordinator filters itself
            pushed = self.ctx.pushable_on(self._engine(index, part), occurrence, part)[0]
            if condition not in pushed:
                return False
        return True

    def _step(self, step: PlanStep) -> PlanStep:
        self.steps.append(step)
        return step

    def _next_id(self) -> str:
        return f"s{len(self.steps) + 1}"

    # -- the pieces ----------------------------------------------------------------------

    def build(self) -> Built:
        ctx = self.ctx
        tree = self.tree
        tables = {
            node.meta[OCCURRENCE]: node
            for node in tree.find_all(exp.Table)
            if OCCURRENCE in node.meta
        }
        # 1. Conjuncts applied by every scan leave the coordinator's query.
        for node in list(tree.find_all(exp.Expression)):
            tag = node.meta.get(PUSHABLE)
            if tag is not None and self._applied_everywhere(ctx.occurrence(tag[0]), tag[1]):
                node.replace(_true())
        # 2. Groups: one fragment replaces their tables; their internal joins go with it.
        group_columns: dict[int, list[tuple[str, str]]] = {}
        for gi, group in enumerate(self.choice.groups):
            group_columns[gi] = self._rewrite_group(gi, group, tables)
        # 3. What each remaining table must deliver.
        needed: dict[int, list[str]] = {}
        for column in tree.find_all(exp.Column):
            ref = column.meta.get(REFERENCE)
            if ref is None:
                continue
            for occ in ctx.scans.occurrences:
                if (occ.scope, occ.alias) == ref and occ.index not in self.group_of:
                    names = needed.setdefault(occ.index, [])
                    if column.name not in names:
                        names.append(column.name)
        for sj in self.choice.semijoins:
            names = needed.setdefault(sj.source, [])
            if sj.source not in self.group_of and sj.source_column not in names:
                names.append(sj.source_column)
        # 4. Fragments, in dependency order: key sources before the scans their keys
        #    reduce (placement never makes a key source a target itself).
        replaced: dict[int, exp.Expression] = {}
        targets = set(self.semijoin_of)
        groups = list(enumerate(self.choice.groups))
        plain = [o for o in ctx.scans.occurrences if o.index not in self.group_of]
        for occ in plain:
            if occ.index not in targets:
                replaced[occ.index] = self._table(occ, self._order(occ, needed.get(occ.index, [])))
        for gi, group in groups:
            if not targets & set(group.members):
                self._group_step(gi, group, group_columns[gi])
        for gi, group in groups:
            if targets & set(group.members):
                self._group_step(gi, group, group_columns[gi])
        for occ in plain:
            if occ.index in targets:
                replaced[occ.index] = self._table(occ, self._order(occ, needed.get(occ.index, [])))
        for index, replacement in replaced.items():
            tables[index].replace(replacement)
        # 6. The rest runs on the coordinator.
        self._share_identical_steps()
        self._final(tree)
        seconds = sum(s.est_seconds for s in self.steps)
        return Built(self.steps, seconds, self.not_pushed)

    def _share_identical_steps(self) -> None:
        seen: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], PlanStep] = {}
        for step in self.steps:
            if step.role not in ("scan", "join"):
                continue
            key = (
                step.engine,
                step.query.sql("duckdb"),
                tuple(sorted(step.sources)),
                tuple(sorted(step.inputs.values())),
            )
            first = seen.setdefault(key, step)
            if first is not step:
                step.same_as = first.id
                step.inputs = {first.id: first.output}
                step.est_seconds = 0.0
                step.reason = f"the same as {first.id}: its result is reused"

    def _order(self, occ: Occurrence, names: list[str]) -> list[str]:
        order = [name for name, _ in occ.relation.columns]
        chosen = [n for n in order if n in names]
        if not chosen:
            # Nothing is read (count(*)): deliver the narrowest column for the row count.
            stats = occ.relation.stats[0]
            chosen = [min(order, key=lambda n: stats.columns[n].width if n in stats.columns else 8)]
        return chosen

    def _rewrite_group(
        self, gi: int, group: Group, tables: dict[int, exp.Table]
    ) -> list[tuple[str, str]]:
        ctx = self.ctx
        name = f"_g{gi}"
        aliases = {ctx.occurrence(m).alias for m in group.members}
        for node in list(self.tree.find_all(exp.EQ)):
            if node.meta.get(CONDITION) in group.conditions:
                node.replace(_true())
        members = [tables[m] for m in group.members]
        select = members[0].find_ancestor(exp.Select)
        assert select is not None
        ordered = sorted(members, key=lambda t: _position(select, t))
        leader = ordered[0]
        moved = []
        for table in ordered[1:]:
            join = table.parent
            if isinstance(join, exp.Join):
                on = join.args.get("on")
                if on is not None:
                    moved.append(on.copy())
                join.pop()
        if moved:
            where = select.args.get("where")
            existing = [where.this] if where is not None else []
            combined = _and(existing + moved)
            select.set("where", exp.Where(this=combined))
        leader.replace(
            exp.Table(
                this=exp.to_identifier(name), alias=exp.TableAlias(this=exp.to_identifier(name))
            )
        )
        used: list[tuple[str, str]] = []
        for column in list(self.tree.find_all(exp.Column)):
            ref = column.meta.get(REFERENCE)
            if ref is None or ref[0] != group.scope or ref[1] not in aliases:
                continue
            pair = (ref[1], column.name)
            if pair not in used:
                used.append(pair)
            column.replace(_column(f"{pair[0]}__{pair[1]}", name))
        for sj in self.choice.semijoins:
            if sj.source in group.members:
                pair = (ctx.occurrence(sj.source).alias, sj.source_column)
                if pair not in used:
                    used.append(pair)
        return used

    def _keys_for(self, occ: Occurrence) -> dict[str, str]:
        """Add the semi-join key step that filters ``occ`` (if any); its id -> relation id."""
        sj = self.semijoin_of.get(occ.index)
        if sj is None:
            return {}
        source = self.ctx.occurrence(sj.source)
        key_id = self._next_id()
        relation = f"_k{len(self.steps)}"
        inputs: dict[str, str] = {}
        sources: dict[str, Source] = {}
        if sj.source in self.group_of:
            gi = self.group_of[sj.source]
            step = next(s for s in self.steps if s.output == f"_g{gi}")
            inputs[step.id] = step.output
            key = _column(f"{source.alias}__{sj.source_column}", step.output)
            table: exp.Expression = exp.Table(
                this=exp.to_identifier(step.output),
                alias=exp.TableAlias(this=exp.to_identifier(step.output)),
            )
            rows = step.est_rows
            conditions: list[exp.Expression] = []
        else:
            table, inputs, sources, conditions = self._source_expression(source, [sj.source_column])
            key = _column(sj.source_column, source.alias)
            rows = self.filtered.get(source.index, source.relation.rows)
        query = exp.select(exp.alias_(key, "key", quoted=True)).distinct().from_(table)
        condition = _and([c.copy() for c in conditions])
        if condition is not None:
            query = query.where(condition)
        keys = sum(stats.distinct(sj.source_column, rows) for stats in source.relation.stats)
        factors = self.ctx.factors(self.coordinator)
        self._step(
            PlanStep(
                id=key_id,
                role="keys",
                engine=self.coordinator.name,
                reason=(
                    f"~{keys:,.0f} distinct {source.alias}.{sj.source_column} keys reduce "
                    f"the scan of {occ.relation.name}"
                ),
                query=query,
                sources=sources,
                inputs=inputs,
                output=relation,
                reads=[source.relation.name] if sources else [],
                est_rows=keys,
                est_bytes=keys * 8,
                est_seconds=factors.startup + rows * factors.row,
            )
        )
        return {key_id: relation}

    def _source_expression(
        self, occ: Occurrence, columns: list[str]
    ) -> tuple[exp.Expression, dict[str, str], dict[str, Source], list[exp.Expression]]:
        """How the coordinator reads ``occ`` for a key step: table, inputs, sources, filters."""
        steps = [s for s in self.steps if s.id in self.fragments.get(occ.index, [])]
        if len(occ.relation.parts) == 1 and steps:
            step = steps[0]
            table = exp.Table(
                this=exp.to_identifier(step.output),
                alias=exp.TableAlias(this=exp.to_identifier(occ.alias)),
            )
            return table, {step.id: step.output}, {}, []
        if len(occ.relation.parts) == 1:
            rid = self.ctx.part_id(occ, 0)
            table = exp.Table(
                this=exp.to_identifier(rid), alias=exp.TableAlias(this=exp.to_identifier(occ.alias))
            )
            return table, {}, {rid: occ.relation.parts[0]}, list(occ.pushable)
        union, inputs, sources = self._union(occ, self._order(occ, columns), steps)
        return union, inputs, sources, []

    def _union(
        self, occ: Occurrence, columns: list[str], steps: list[PlanStep]
    ) -> tuple[exp.Expression, dict[str, str], dict[str, Source]]:
        branches: list[exp.Select] = []
        inputs: dict[str, str] = {}
        sources: dict[str, Source] = {}
        fragment_steps = iter(steps)
        for part in range(len(occ.relation.parts)):
            projection = [_column(c, occ.alias) for c in columns]
            if self._native(occ.index, part):
                rid = self.ctx.part_id(occ, part)
                sources[rid] = occ.relation.parts[part]
                branch = exp.select(*projection).from_(
                    exp.Table(
                        this=exp.to_identifier(rid),
                        alias=exp.TableAlias(this=exp.to_identifier(occ.alias)),
                    )
                )
                condition = _and([c.copy() for c in occ.pushable])
                if condition is not None:
                    branch = branch.where(condition)
            else:
                step = next(fragment_steps)
                inputs[step.id] = step.output
                branch = exp.select(*projection).from_(
                    exp.Table(
                        this=exp.to_identifier(step.output),
                        alias=exp.TableAlias(this=exp.to_identifier(occ.alias)),
                    )
                )
            branches.append(branch)
        union: exp.Query = branches[0]
        for branch in branches[1:]:
            union = exp.union(union, branch, distinct=False)
        alias = exp.TableAlias(this=exp.to_identifier(occ.alias))
        return exp.Subquery(this=union, alias=alias), inputs, sources

    def _table(self, occ: Occurrence, columns: list[str]) -> exp.Expression:
        """What replaces ``occ``'s table in the coordinator's query; adds its fragments."""
        ctx = self.ctx
        keys = self._keys_for(occ) if occ.index in self.semijoin_of else {}
        total = 0.0
        for part in range(len(occ.relation.parts)):
            stats = occ.relation.stats[part]
            engine = self._engine(occ.index, part)
            if self._native(occ.index, part):
                rows = ctx.filtered_rows(occ, part, list(occ.pushable))
                self.rows_into_coordinator += rows
                self.native_bytes += stats.rows * stats.width(columns)
                total += rows
                continue
            pushed = self._pushed(occ, part, engine)
            rows = ctx.filtered_rows(occ, part, pushed)
            conditions = [c.copy() for c in pushed]
            inputs: dict[str, str] = {}
            if keys:
                sj = self.semijoin_of[occ.index]
                key_step = next(iter(keys))
                key_rows = next(s for s in self.steps if s.id == key_step).est_rows
                inputs = dict(keys)
                conditions.append(
                    exp.In(
                        this=_column(sj.target_column, occ.alias),
                        query=exp.select(_column("key", keys[key_step])).from_(keys[key_step]),
                    )
                )
                rows *= min(1.0, key_rows / stats.distinct(sj.target_column))
            rid = ctx.part_id(occ, part)
            query = exp.select(*[_column(c, occ.alias) for c in columns]).from_(
                exp.Table(
                    this=exp.to_identifier(rid),
                    alias=exp.TableAlias(this=exp.to_identifier(occ.alias)),
                )
            )
            condition = _and(conditions)
            if condition is not None:
                query = query.where(condition)
            width = stats.width(columns)
            factors = ctx.factors(engine)
            scanned = (
                stats.size_bytes if stats.size_bytes is not None else stats.rows * stats.width()
            )
            seconds = (
                factors.startup
                + stats.rows * factors.row * (2 if keys else 1)
                + scanned * factors.scan_byte
                + rows * factors.transfer_row
                + rows * width * factors.transfer_byte
            )
            output = f"_f{len(self.steps) + 1}"
            step = self._step(
                PlanStep(
                    id=self._next_id(),
                    role="scan",
                    engine=engine.name,
                    reason=self._scan_reason(occ, part, engine, pushed, rows, width),
                    query=query,
                    sources={rid: occ.relation.parts[part]},
                    inputs=inputs,
                    output=output,
                    reads=[occ.relation.parts[part].qualified_name],
                    est_rows=rows,
                    est_bytes=rows * width,
                    est_seconds=seconds,
                    boundary=f"{engine.name} -> {self.coordinator.name}",
                    key_inputs=dict(keys),
                )
            )
            self.fragments.setdefault(occ.index, []).append(step.id)
            self.rows_into_coordinator += rows
            total += rows
        self.filtered[occ.index] = total
        alias = exp.TableAlias(this=exp.to_identifier(occ.alias))
        if len(occ.relation.parts) > 1:
            steps = [s for s in self.steps if s.id in self.fragments.get(occ.index, [])]
            union, _, _ = self._union(occ, columns, steps)
            return union
        if self._native(occ.index, 0):
            rid = ctx.part_id(occ, 0)
            return exp.Table(this=exp.to_identifier(rid), alias=alias)
        step_id = self.fragments[occ.index][0]
        output = next(s.output for s in self.steps if s.id == step_id)
        return exp.Table(this=exp.to_identifier(output), alias=alias)

    def _scan_reason(
        self,
        occ: Occurrence,
        part: int,
        engine: Engine,
        pushed: list[exp.Expression],
        rows: float,
        width: float,
    ) -> str:
        source = occ.relation.parts[part]
        readers = [e.name for e in self.ctx.readers(source)]
        why = (
            f"{engine.name} holds {source.qualified_name}"
            if source.system == engine.system
            else f"{engine.name} reads {source.system_kind} datasets"
        )
        if len(readers) == 1:
            why += " (the only engine that reads it)"
        filters = f"; {len(pushed)} filter(s) applied while reading" if pushed else ""
        sj = self.semijoin_of.get(occ.index)
        reduced = (
            f"; reduced by the keys of {self.ctx.occurrence(sj.source).relation.name}" if sj else ""
        )
        return (
            f"{why}{filters}{reduced}; moves ~{rows:,.0f} rows "
            f"(~{_size(rows * width)}) to {self.coordinator.name}"
        )

    def _group_step(self, gi: int, group: Group, used: list[tuple[str, str]]) -> PlanStep:
        ctx = self.ctx
        engine = self.engines[group.engine]
        occs = [ctx.occurrence(m) for m in group.members]
        keys: dict[str, str] = {}
        for occ in occs:
            if occ.index in self.semijoin_of:
                keys.update(self._keys_for(occ))
        if not used:
            first = occs[0]
            used = [(first.alias, self._order(first, [])[0])]
        projection = [
            exp.alias_(_column(col, alias), f"{alias}__{col}", quoted=True) for alias, col in used
        ]
        tables = [
            exp.Table(
                this=exp.to_identifier(ctx.part_id(o, 0)),
                alias=exp.TableAlias(this=exp.to_identifier(o.alias)),
            )
            for o in occs
        ]
        query = exp.select(*projection).from_(tables[0])
        for table in tables[1:]:
            query = query.join(table, join_type="CROSS")
        conditions: list[exp.Expression] = []
        originals = {
            node.meta[CONDITION]: node
            for node in ctx.tree.find_all(exp.EQ)
            if node.meta.get(CONDITION) in group.conditions
        }
        for cid in group.conditions:
            conditions.append(originals[cid].copy())
        rows_by_alias: dict[str, float] = {}
        scanned_rows = 0.0
        scanned_bytes = 0.0
        for occ in occs:
            pushed = self._pushed(occ, 0, engine)
            conditions += [c.copy() for c in pushed]
            stats = occ.relation.stats[0]
            rows = ctx.filtered_rows(occ, 0, pushed)
            sj = self.semijoin_of.get(occ.index)
            if sj is not None:
                key_rows = next(s for s in self.steps if s.output in keys.values()).est_rows
                rows *= min(1.0, key_rows / stats.distinct(sj.target_column))
                relation = next(iter(keys.values()))
                conditions.append(
                    exp.In(
                        this=_column(sj.target_column, occ.alias),
                        query=exp.select(_column("key", relation)).from_(relation),
                    )
                )
            rows_by_alias[occ.alias] = rows
            scanned_rows += stats.rows
            scanned_bytes += stats.size_bytes or stats.rows * stats.width()
        out_rows = self._join_rows(group, rows_by_alias)
        condition = _and(conditions)
        if condition is not None:
            query = query.where(condition)
        width = sum(
            ctx.occurrence(next(m for m in group.members if ctx.occurrence(m).alias == a))
            .relation.stats[0]
            .width([c])
            for a, c in used
        )
        factors = ctx.factors(engine)
        seconds = (
            factors.startup
            + scanned_rows * factors.row
            + scanned_bytes * factors.scan_byte
            + (sum(rows_by_alias.values()) + out_rows) * factors.row
            + out_rows * factors.transfer_row
            + out_rows * width * factors.transfer_byte
        )
        names = " and ".join(o.relation.name for o in occs)
        self.rows_into_coordinator += out_rows
        return self._step(
            PlanStep(
                id=self._next_id(),
                role="join",
                engine=engine.name,
                reason=(
                    f"{engine.name} holds {names}: joining them there moves ~{out_rows:,.0f} "
                    f"rows (~{_size(out_rows * width)}) instead of "
                    f"~{sum(rows_by_alias.values()):,.0f}"
                ),
                query=query,
                sources={ctx.part_id(o, 0): o.relation.parts[0] for o in occs},
                inputs=dict(keys),
                output=f"_g{gi}",
                reads=[o.relation.name for o in occs],
                est_rows=out_rows,
                est_bytes=out_rows * width,
                est_seconds=seconds,
                boundary=f"{engine.name} -> {self.coordinator.name}",
                key_inputs=dict(keys),
            )
        )

    def _join_rows(self, group: Group, rows: dict[str, float]) -> float:
        ctx = self.ctx
        by_alias = {ctx.occurrence(m).alias: ctx.occurrence(m) for m in group.members}
        conditions = [ctx.scans.conditions[c] for c in group.conditions]
        joined: set[str] = set()
        total = 1.0
        for condition in conditions:
            (la, lc), (ra, rc) = condition.left, condition.right
            left_stats = by_alias[la].relation.stats[0]
            right_stats = by_alias[ra].relation.stats[0]
            ld = left_stats.distinct(lc, rows[la])
            rd = right_stats.distinct(rc, rows[ra])
            if not joined:
                total = join_rows(rows[la], rows[ra], ld, rd)
                joined |= {la, ra}
            elif la in joined and ra in joined:
                total /= max(ld, rd, 1.0)
            else:
                new = ra if la in joined else la
                total = join_rows(total, rows[new], ld, rd)
                joined.add(new)
        for alias, count in rows.items():
            if alias not in joined:
                total *= count
        return max(total, 1.0)

    def _final(self, tree: exp.Query) -> PlanStep:
        ctx = self.ctx
        tree = _tidy(tree)
        sources: dict[str, Source] = {}
        for node in tree.find_all(exp.Table):
            for occ in ctx.scans.occurrences:
                for part in range(len(occ.relation.parts)):
                    if node.name == ctx.part_id(occ, part) and self._native(occ.index, part):
                        sources[node.name] = occ.relation.parts[part]
        consumed = {s.output for s in self.steps if s.role in ("scan", "join")}
        inputs = {s.id: s.output for s in self.steps if s.output in consumed}
        factors = ctx.factors(self.coordinator)
        rows_in = self.rows_into_coordinator
        out_rows = _output_rows(tree, rows_in)
        seconds = (
            factors.startup
            + factors.session * (0 if getattr(self.coordinator, "running", True) else 1)
            + rows_in * factors.row * 2
            + self.native_bytes * factors.scan_byte
            + out_rows * factors.transfer_row
        )
        return self._step(
            PlanStep(
                id=self._next_id(),
                role="final",
                engine=self.coordinator.name,
                reason="",
                query=tree,
                sources=sources,
                inputs=inputs,
                output="_result",
                reads=sorted({s.qualified_name for s in sources.values()}),
                est_rows=out_rows,
                est_bytes=0.0,
                est_seconds=seconds,
            )
        )


def _tidy(tree: exp.Query) -> exp.Query:
    """Drop the TRUE conjuncts that stand where pushed-down conditions were."""

    def drop(node: exp.Expression) -> exp.Expression:
        kept: exp.Expression = node
        if isinstance(node, exp.And):
            left, right = node.this, node.expression
            if isinstance(left, exp.Boolean) and left.this:
                kept = right
            elif isinstance(right, exp.Boolean) and right.this:
                kept = left
        elif isinstance(node, exp.Paren) and isinstance(node.this, exp.Boolean):
            kept = node.this
        return kept

    for _ in range(8):  # nested ANDs collapse from the leaves up, one level per pass
        before = tree.sql("duckdb")
        tree = tree.transform(drop)  # type: ignore[assignment]
        if tree.sql("duckdb") == before:
            break
    for where in list(tree.find_all(exp.Where)):
        if isinstance(where.this, exp.Boolean) and where.this.this:
            where.pop()
    return tree


def _position(select: exp.Select, table: exp.Table) -> int:
    if select.args.get("from_") is not None and select.args["from_"].this is table:
        return -1
    for index, join in enumerate(select.args.get("joins") or []):
        if join.this is table:
            return index
    return 10_000


def _output_rows(tree: exp.Query, rows_in: float) -> float:
    """A rough size of the query's result, for the cost of handing it back."""
    rows = max(rows_in, 1.0)
    if isinstance(tree, exp.Select):
        if tree.args.get("group"):
            rows = max(1.0, rows**0.5)
        elif tree.find(exp.AggFunc) is not None and tree.find(exp.Window) is None:
            rows = 1.0
        limit = tree.args.get("limit")
        if limit is not None and isinstance(limit.expression, exp.Literal):
            rows = min(rows, float(limit.expression.name))
    return rows


def _size(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} GB"


def build_steps(ctx: Context, choice: Choice) -> Built:
    """The steps of ``choice``, in an order where every step's inputs come first."""
    return _Builder(ctx, choice).build()
