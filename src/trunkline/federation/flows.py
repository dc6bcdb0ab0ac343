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
is counted twice and nothing is lost. Into a hub topic, see
:mod:`trunkline.federation._continuous` for what a restart guarantees.

``trunkline run`` runs every continuous flow as a task next to the sources and sinks
(:mod:`trunkline.runtime._flow_task`); ``trunkline flow run`` runs one in the foreground.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from trunkline.engines._write import write
from trunkline.errors import ConfigError, NotFound
from trunkline.federation._continuous import ContinuousFlow
from trunkline.federation.session import open_planner
from trunkline.planner import Plan, Planner
from trunkline.project import HUB_SYSTEM, Project


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


def register(project: Project, target: Target, plan: Plan, flow: str, run_id: str) -> None:
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
        register(project, target, plan, name, uuid.uuid4().hex)
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


def continuous_flow(project: Project, planner: Planner, name: str) -> ContinuousFlow:
    """Continuous flow ``name`` of the project file, ready to run increments.

    Raises:
        ConfigError: no such flow, no ``into:``, no ``freshness:``, or a target a continuous
            flow cannot write.
    """
    spec = _flow(project, name)
    if not spec.freshness:
        raise ConfigError(f"flow {name!r} has no 'freshness:'; it runs as a batch")
    return ContinuousFlow(project, planner, name, spec.sql, resolve_target(project, spec.into))


def _continuous(
    project: Project, planner: Planner, name: str, spec: Any, target: Target, *, once: bool
) -> dict[str, Any]:
    flow = ContinuousFlow(project, planner, name, spec.sql, target)
    interval = max(0.2, spec.freshness / 1000 / 2)
    total, hash_ = 0, ""
    run_id = uuid.uuid4().hex
    registered = False
    try:
        while True:
            done = flow.step()
            total += done.rows
            hash_ = done.plan_hash
            if done.rows and not registered:
                register(project, target, planner.plan(spec.sql), name, run_id)
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
