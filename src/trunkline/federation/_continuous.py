"""One continuous flow: each increment folds the hub offsets that arrived since the last one
into the flow's target, and commits where the next increment starts.

Into a DuckDB target the increment's rows and the flow's next offsets commit in one DuckDB
transaction (table ``_trunkline.flow_offsets`` of the target's file): exactly once.

Into a hub topic (``into: hub.<topic>``) the flow keeps its state in a DuckDB file of its own
(``.trunkline/flows/<flow>.duckdb``: the result so far and the next offsets). An increment
merges into that state inside a transaction, produces the rows it changed to the topic, and
commits the transaction only once the produce is durable. A crash between the two leaves
records in the topic whose increment is not committed; the restart computes the increment
again over at least the same offsets, from the same state. So:

* a flow with ``GROUP BY`` produces, per changed group, the group's whole current row keyed
  by its group key (JSON): a record produced twice carries the same or a newer value, so
  whoever reads the newest record per key (a compacted topic, an upsert sink) counts every
  input record exactly once;
* a flow without aggregates appends the rows of each increment: at-least-once, the rows of
  the increment a crash interrupted may appear twice.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from sqlglot import exp

from trunkline.connectors._json import JsonEncoder
from trunkline.errors import ConfigError, EngineError, PlanningError, TopicNotFound
from trunkline.planner import Plan, Planner
from trunkline.project import Project

if TYPE_CHECKING:
    from trunkline.federation.flows import Target

_MERGE = {"sum": "sum", "count": "sum", "min": "min", "max": "max"}
OFFSETS_TABLE = '"_trunkline"."flow_offsets"'
#: Target kinds a continuous flow writes into.
CONTINUOUS_TARGETS = ("duckdb", "hub")


@dataclasses.dataclass(frozen=True, slots=True)
class Increment:
    """What one increment did.

    Attributes:
        records: input records (hub offsets) it consumed.
        rows: rows it wrote into the target (merged rows, or produced records).
        plan_hash: the hash of the increment's plan.
    """

    records: int
    rows: int
    plan_hash: str


def aggregates(sql: str) -> tuple[list[str], dict[str, str]] | None:
    """(group key columns, {aggregate column: merge function}) of a GROUP BY query, None if it
    has no aggregates; PlanningError for aggregates that do not merge."""
    from trunkline.planner.bind import parse

    query = parse(sql)
    if not isinstance(query, exp.Select) or query.find(exp.AggFunc) is None:
        return None
    keys, merges = [], {}
    for item in query.expressions:
        inner = item.this if isinstance(item, exp.Alias) else item
        name = item.alias_or_name
        if isinstance(inner, exp.AggFunc):
            function = inner.key.lower()
            if function not in _MERGE or inner.find(exp.Distinct) is not None:
                raise PlanningError(
                    f"continuous flows merge SUM, COUNT, MIN and MAX across increments; "
                    f"{inner.sql('duckdb')} does not merge (compute AVG as SUM / COUNT "
                    "downstream)",
                    construct=inner.key.upper(),
                )
            merges[name] = _MERGE[function]
        elif inner.find(exp.AggFunc) is not None:
            raise PlanningError(
                f"continuous flows need each aggregate as a column of its own, not "
                f"{inner.sql('duckdb')}",
                construct=inner.sql("duckdb"),
            )
        else:
            keys.append(name)
    return keys, merges


def stream_of(plan: Plan) -> tuple[str, str]:
    """(relation id, topic) of the one topic a continuous flow reads."""
    found = {
        (rid, source.name)
        for step in plan.steps
        for rid, source in step.sources.items()
        if source.system_kind == "hub" and not source.state_of
    }
    if len(found) != 1:
        raise PlanningError(
            f"a continuous flow reads exactly one topic; this one reads {len(found)}"
        )
    return next(iter(found))


def _with_offsets(plan: Plan, rid: str, ranges: dict[str, list[int]]) -> None:
    for step in plan.steps:
        if rid in step.sources:
            source = step.sources[rid]
            step.sources[rid] = dataclasses.replace(
                source, options={**dict(source.options), "offsets": ranges}
            )


def committed_offsets(con: duckdb.DuckDBPyConnection, flow: str, topic: str) -> dict[int, int]:
    """The next offset per partition of ``topic`` that flow ``flow`` has committed."""
    con.execute('CREATE SCHEMA IF NOT EXISTS "_trunkline"')
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (flow VARCHAR, topic VARCHAR, "
        "partition INTEGER, next_offset BIGINT, PRIMARY KEY (flow, topic, partition))"
    )
    rows = con.execute(
        f"SELECT partition, next_offset FROM {OFFSETS_TABLE} WHERE flow = ? AND topic = ?",
        [flow, topic],
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


def _quoted(name: str) -> str:
    return str(exp.to_identifier(name, quoted=True).sql("duckdb"))


def _merge(
    con: duckdb.DuckDBPyConnection,
    table: str,
    delta: pa.Table,
    shape: tuple[list[str], dict[str, str]] | None,
) -> str:
    """Fold ``delta`` into ``table``; returns a relation holding the rows that changed."""
    con.register("_delta", delta)
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _delta LIMIT 0")
    if shape is None:
        con.execute(f"INSERT INTO {table} SELECT * FROM _delta")
        return "_delta"
    keys, merges = shape
    same = (
        " AND ".join(f"t.{_quoted(k)} IS NOT DISTINCT FROM d.{_quoted(k)}" for k in keys) or "TRUE"
    )
    columns = ", ".join(_quoted(n) for n in delta.column_names)
    select = ", ".join(
        f"{merges[n]}({_quoted(n)}) AS {_quoted(n)}" if n in merges else _quoted(n)
        for n in delta.column_names
    )
    group = ", ".join(_quoted(k) for k in keys)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _merged AS SELECT {select} FROM ("
        f"SELECT {columns} FROM {table} t WHERE EXISTS (SELECT 1 FROM _delta d "
        f"WHERE {same}) UNION ALL SELECT {columns} FROM _delta)"
        + (f" GROUP BY {group}" if group else "")
    )
    con.execute(f"DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM _delta d WHERE {same})")
    con.execute(f"INSERT INTO {table} SELECT {columns} FROM _merged")
    return "_merged"


class ContinuousFlow:
    """A continuous flow of a project, run one increment at a time by :meth:`step`.

    Example:
        >>> target = resolve_target(project, "wh.main.totals_live")  # doctest: +SKIP
        >>> flow = ContinuousFlow(project, planner, "totals_live", sql, target)  # doctest: +SKIP
        >>> flow.step().records  # doctest: +SKIP
        3000

    Raises:
        ConfigError: the target is neither DuckDB nor a hub topic, or is the input topic.
        PlanningError: the query does not run incrementally (two topics, AVG...).
    """

    def __init__(
        self, project: Project, planner: Planner, name: str, sql: str, target: Target
    ) -> None:
        if target.kind not in CONTINUOUS_TARGETS:
            raise ConfigError(
                f"flow {name}: continuous flows write into DuckDB targets (offsets and rows "
                "commit in one transaction there) or hub topics (into: hub.<topic>); "
                f"{target.qualified_name} is {target.kind}"
            )
        self.project = project
        self.planner = planner
        self.name = name
        self.sql = sql
        self.target = target
        self.shape = aggregates(sql)
        _, self.topic = stream_of(planner.plan(sql))
        if target.kind == "hub" and target.name == self.topic:
            raise ConfigError(
                f"flow {name}: into: {target.qualified_name} is the topic the flow reads; "
                "a flow cannot feed itself"
            )
        if target.kind == "hub":
            self.state_path = project.root / ".trunkline" / "flows" / f"{name}.duckdb"
            self.schema, self.table = "main", "result"
        else:
            self.state_path = Path(target.location)
            schema, _, self.table = target.name.rpartition(".")
            self.schema = schema or "main"

    def step(self) -> Increment:
        """Fold what is new since the last increment into the target and commit it."""
        plan = self.planner.plan(self.sql)
        rid, topic = stream_of(plan)
        hub = self.project.hub
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with duckdb.connect(str(self.state_path)) as con:
                committed = committed_offsets(con, self.name, topic)
                ends = hub.end_offsets(topic)
                starts = hub.start_offsets(topic)
                ranges = {
                    str(p): [max(committed.get(p, starts.get(p, 0)), starts.get(p, 0)), end]
                    for p, end in ends.items()
                }
                records = sum(max(0, end - start) for start, end in ranges.values())
                if not records:
                    return Increment(0, 0, plan.hash)
                _with_offsets(plan, rid, ranges)
                delta = self.planner.run(plan)
                table = f"{_quoted(self.schema)}.{_quoted(self.table)}"
                con.execute("BEGIN")
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(self.schema)}")
                changed = _merge(con, table, delta, self.shape)
                rows = delta.num_rows
                if self.target.kind == "hub":
                    # Durable in the topic before the offsets commit: see the module docstring.
                    rows = self._produce(con.execute(f"SELECT * FROM {changed}").to_arrow_table())
                for partition, (_, end) in ranges.items():
                    con.execute(
                        f"INSERT OR REPLACE INTO {OFFSETS_TABLE} VALUES (?, ?, ?, ?)",
                        [self.name, topic, int(partition), end],
                    )
                con.execute("COMMIT")
        except duckdb.Error as exc:
            # A locked or unreachable file may come back; SQL the target refuses will not.
            retryable = isinstance(exc, duckdb.IOException | duckdb.TransactionException)
            raise EngineError(
                f"flow {self.name}: writing {self.target.qualified_name} "
                f"({self.state_path}) failed: {exc}",
                engine="duckdb",
                retryable=retryable,
            ) from exc
        return Increment(records, rows, plan.hash)

    def _produce(self, changed: pa.Table) -> int:
        project = self.project
        topic = self.target.name
        if topic not in project.hub.list_topics():
            project.create_topic(topic)
        if changed.num_rows:
            # Rows as JSON objects, keyed by the group key (one column's text, or a JSON
            # object of several), as the sources encode them.
            encoder = JsonEncoder(key=self.shape[0] if self.shape is not None else ())
            try:
                project.hub.produce(topic, encoder.encode(changed))
            finally:
                encoder.close()
        return int(changed.num_rows)

    def lag(self) -> tuple[int, float]:
        """(input records not committed yet, age in seconds of the oldest of them)."""
        hub = self.project.hub
        try:
            ends = hub.end_offsets(self.topic)
            starts = hub.start_offsets(self.topic)
        except TopicNotFound:
            return 0, 0.0
        if not self.state_path.exists():
            committed: dict[int, int] = {}
        else:
            try:
                with duckdb.connect(str(self.state_path)) as con:
                    committed = committed_offsets(con, self.name, self.topic)
            except duckdb.Error:
                return 0, 0.0
        behind, oldest = 0, 0.0
        now_ms = time.time() * 1000
        for partition, end in ends.items():
            done = max(committed.get(partition, 0), starts.get(partition, 0))
            if end > done:
                behind += end - done
                fetched = hub.fetch(self.topic, partition, done, max_records=1)
                if len(fetched):
                    stamp = fetched.records.column("timestamp").cast(pa.int64())[0].as_py()
                    oldest = max(oldest, (now_ms - stamp) / 1000)
        return behind, round(oldest, 3)
