"""Flows of ``trunkline.yaml``: a batch flow replaces its target with the query's result; a
continuous flow (``freshness:``) folds each increment of new hub offsets into its target.

``into:`` names the target as ``<system>.<table>``: a catalog system (DuckDB file,
PostgreSQL database, Parquet folder), a sink of the project file with a ``path``, or
``hub.<topic>``.

Continuous flows read one topic (joined, if they like, with tables that do not change
under them). Each increment is the flow's query over exactly the offsets that arrived since
the last one; its rows are appended to the target, or, for a query with ``GROUP BY`` whose
aggregates are ``SUM``, ``COUNT``, ``MIN`` and ``MAX`` (tumbling windows are group keys such
as ``time_bucket(INTERVAL '1 minute', ts)``), merged into the target's rows of the same
keys. The increment's rows and the flow's next offsets are written in one DuckDB
transaction, so a restart resumes exactly where the last committed increment ended: nothing
is counted twice and nothing is lost. This loop is the flow runner's own (the connectors
runtime does not run flows yet).
"""

from __future__ import annotations

import dataclasses
import difflib
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from trunkline.engines._write import write
from trunkline.errors import ConfigError, EngineError, NotFound, PlanningError
from trunkline.federation.session import open_planner
from trunkline.planner import Plan, Planner
from trunkline.project import HUB_SYSTEM, Project

_MERGE = {"sum": "sum", "count": "sum", "min": "min", "max": "max"}
OFFSETS_TABLE = '"_trunkline"."flow_offsets"'


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where a flow writes: a system kind, its location, and the table's name there."""

    system: str
    kind: str
    location: str
    options: Mapping[str, Any]
    name: str

    @property
    def qualified_name(self) -> str:
        return f"{self.system}.{self.name}"


def resolve_target(project: Project, into: str) -> Target:
    """The target ``into`` names; ConfigError with a "did you mean" if nothing does."""
    system, dot, name = into.partition(".")
    if not dot or not name:
        raise ConfigError(f"into: {into!r}: expected <system or sink>.<table>")
    if system == HUB_SYSTEM:
        return Target(HUB_SYSTEM, "hub", "", {}, name)
    sink = project.config.sinks.get(system)
    if sink is not None:
        path = getattr(sink.config, "path", None)
        if path is None or sink.type not in ("duckdb", "parquet"):
            raise ConfigError(f"into: sink {system!r} ({sink.type}) cannot take flow results")
        location = str(path if Path(path).is_absolute() else project.root / path)
        return Target(system, sink.type, location, {}, name)
    try:
        found = project.meta.get_system(system)
    except NotFound:
        known = [s.name for s in project.meta.list_systems()] + list(project.config.sinks)
        close = difflib.get_close_matches(system, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"into: {into!r}: no catalog system or sink is called {system!r}{hint}"
        ) from None
    return Target(found.name, found.kind, found.location, dict(found.options), name)


def _flow(project: Project, name: str) -> Any:
    flows = project.config.flows
    if name not in flows:
        close = difflib.get_close_matches(name, list(flows), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"no flow is called {name!r} in trunkline.yaml{hint}")
    spec = flows[name]
    if not spec.into:
        raise ConfigError(f"flow {name!r} has no 'into:'; use trunkline query to only query")
    return spec


def _write_target(project: Project, target: Target, table: pa.Table) -> None:
    if target.kind == "hub":
        import json

        values = [json.dumps(row, default=str).encode() for row in table.to_pylist()]
        if target.name not in project.hub.list_topics():
            project.create_topic(target.name)
        project.hub.produce(
            target.name, pa.table({"value": pa.array(values, pa.binary())}), partition=0
        )
        return
    write(target.kind, target.location, target.options, target.name, table)


def _register(project: Project, target: Target, plan: Plan, flow: str, run_id: str) -> None:
    """The target in the catalog, and lineage from every dataset the flow read."""
    meta = project.meta
    if target.kind == "hub":
        project.sync_catalog()
    else:
        meta.upsert_system(target.system, target.kind, target.location)
        meta.upsert_dataset(
            target.system, target.name, "fileset" if target.kind == "parquet" else "table"
        )
    for dataset in sorted({r for s in plan.steps for r in s.reads}):
        try:
            meta.record_lineage(
                dataset, target.qualified_name, job=flow, job_kind="flow", run_id=run_id
            )
        except NotFound:
            continue


def run_flow(
    project: Project, name: str, *, once: bool = False, spark: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run flow ``name``: a batch flow once; a continuous one until interrupted (or, with
    ``once``, over what is new now). Returns what it did."""
    spec = _flow(project, name)
    target = resolve_target(project, spec.into)
    planner = open_planner(project, spark=spark)
    try:
        if spec.freshness:
            return _continuous(project, planner, name, spec, target, once=once)
        plan = planner.plan(spec.sql)
        # The whole result exists before anything is written: a failing step writes nothing.
        table = planner.run(plan)
        _write_target(project, target, table)
        _register(project, target, plan, name, uuid.uuid4().hex)
        return {
            "flow": name,
            "mode": "batch",
            "into": target.qualified_name,
            "rows": table.num_rows,
            "plan": plan.hash,
        }
    finally:
        planner.close()


# Continuous flows ----------------------------------------------------------------------


def _aggregates(sql: str) -> tuple[list[str], dict[str, str]] | None:
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


def _stream(plan: Plan) -> tuple[str, str]:
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


def _committed(con: duckdb.DuckDBPyConnection, flow: str, topic: str) -> dict[int, int]:
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


def _merge(
    con: duckdb.DuckDBPyConnection,
    table: str,
    delta: pa.Table,
    shape: tuple[list[str], dict[str, str]] | None,
) -> None:
    con.register("_delta", delta)
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _delta LIMIT 0")
    if shape is None:
        con.execute(f"INSERT INTO {table} SELECT * FROM _delta")
        return
    keys, merges = shape
    same = " AND ".join(f't."{k}" IS NOT DISTINCT FROM d."{k}"' for k in keys) or "TRUE"
    columns = [f'"{n}"' for n in delta.column_names]
    select = ", ".join(
        f'{merges[n]}("{n}") AS "{n}"' if n in merges else f'"{n}"' for n in delta.column_names
    )
    group = ", ".join(f'"{k}"' for k in keys)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _merged AS SELECT {select} FROM ("
        f"SELECT {', '.join(columns)} FROM {table} t WHERE EXISTS (SELECT 1 FROM _delta d "
        f"WHERE {same}) UNION ALL SELECT {', '.join(columns)} FROM _delta)"
        + (f" GROUP BY {group}" if group else "")
    )
    con.execute(f"DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM _delta d WHERE {same})")
    con.execute(f"INSERT INTO {table} SELECT {', '.join(columns)} FROM _merged")


def increment(
    project: Project, planner: Planner, name: str, sql: str, target: Target
) -> tuple[int, str]:
    """Fold the offsets that arrived since the last increment into the target.

    Returns (rows of the increment, plan hash); (0, hash) when nothing is new.
    """
    if target.kind != "duckdb":
        raise ConfigError(
            f"continuous flows write into DuckDB targets (offsets and rows commit in one "
            f"transaction there); {target.qualified_name} is {target.kind}"
        )
    shape = _aggregates(sql)
    plan = planner.plan(sql)
    rid, topic = _stream(plan)
    schema, _, table_name = target.name.rpartition(".")
    table = f'"{schema or "main"}"."{table_name}"'
    try:
        with duckdb.connect(target.location) as con:
            committed = _committed(con, name, topic)
            ends = project.hub.end_offsets(topic)
            starts = project.hub.start_offsets(topic)
            ranges = {
                str(p): [max(committed.get(p, starts.get(p, 0)), starts.get(p, 0)), end]
                for p, end in ends.items()
            }
            if all(start >= end for start, end in ranges.values()):
                return 0, plan.hash
            _with_offsets(plan, rid, ranges)
            delta = planner.run(plan)
            con.execute("BEGIN")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema or "main"}"')
            _merge(con, table, delta, shape)
            for partition, (_, end) in ranges.items():
                con.execute(
                    f"INSERT OR REPLACE INTO {OFFSETS_TABLE} VALUES (?, ?, ?, ?)",
                    [name, topic, int(partition), end],
                )
            con.execute("COMMIT")
    except duckdb.Error as exc:
        raise EngineError(
            f"flow {name}: writing {target.qualified_name} failed: {exc}", engine="duckdb"
        ) from exc
    return delta.num_rows, plan.hash


def _continuous(
    project: Project, planner: Planner, name: str, spec: Any, target: Target, *, once: bool
) -> dict[str, Any]:
    interval = max(0.2, spec.freshness / 1000 / 2)
    total, hash_ = 0, ""
    run_id = uuid.uuid4().hex
    registered = False
    try:
        while True:
            rows, hash_ = increment(project, planner, name, spec.sql, target)
            total += rows
            if rows and not registered:
                _register(project, target, planner.plan(spec.sql), name, run_id)
                registered = True
            if once:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return {
        "flow": name,
        "mode": "continuous",
        "into": target.qualified_name,
        "rows": total,
        "plan": hash_,
    }
