"""Lineage edges on an open connection: record one, read direct edges, walk the graph."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from trunkline.meta._lookup import insert_new, now
from trunkline.meta._schema import datasets, jobs, lineage_edges, lineage_runs, systems
from trunkline.meta._types import DatasetRef, Direction, LineageEdge

_source = datasets.alias("source")
_source_system = systems.alias("source_system")
_target = datasets.alias("target")
_target_system = systems.alias("target_system")

_EDGE_SELECT = (
    sa.select(
        lineage_edges,
        _source_system.c.name.label("source_system"),
        _source.c.name.label("source_name"),
        _target_system.c.name.label("target_system"),
        _target.c.name.label("target_name"),
        jobs.c.name.label("job"),
        jobs.c.kind.label("job_kind"),
    )
    .select_from(
        lineage_edges.join(_source, _source.c.id == lineage_edges.c.source_id)
        .join(_source_system, _source_system.c.id == _source.c.system_id)
        .join(_target, _target.c.id == lineage_edges.c.target_id)
        .join(_target_system, _target_system.c.id == _target.c.system_id)
        .join(jobs, jobs.c.id == lineage_edges.c.job_id)
    )
    .order_by(
        _source_system.c.name,
        _source.c.name,
        _target_system.c.name,
        _target.c.name,
        jobs.c.kind,
        jobs.c.name,
    )
)


@dataclass(frozen=True, slots=True)
class _Found:
    """An edge with the row ids the walk follows."""

    id: int
    source_id: int
    target_id: int
    edge: LineageEdge


def record(
    conn: sa.Connection, source_id: int, target_id: int, job: str, job_kind: str, run_id: str
) -> LineageEdge:
    """Create or refresh the edge source -> target through the job, and note the run."""
    seen = now()
    insert_new(conn, jobs, ("kind", "name"), {"name": job, "kind": job_kind, "created_at": seen})
    job_id = conn.execute(
        sa.select(jobs.c.id).where(jobs.c.kind == job_kind, jobs.c.name == job)
    ).scalar_one()
    key = {"source_id": source_id, "target_id": target_id, "job_id": job_id}
    fresh = {**key, "first_seen": seen, "last_seen": seen, "last_run_id": run_id}
    where = sa.and_(*(lineage_edges.c[column] == value for column, value in key.items()))
    if not insert_new(conn, lineage_edges, tuple(key), fresh):
        conn.execute(
            sa.update(lineage_edges).where(where).values(last_seen=seen, last_run_id=run_id)
        )
    edge_id = conn.execute(sa.select(lineage_edges.c.id).where(where)).scalar_one()
    insert_new(
        conn,
        lineage_runs,
        ("edge_id", "run_id"),
        {"edge_id": edge_id, "run_id": run_id, "seen_at": seen},
    )
    return _edges(conn, lineage_edges.c.id == edge_id)[0].edge


def direct(conn: sa.Connection, dataset_id: int, direction: Direction) -> list[LineageEdge]:
    """Edges into (upstream) or out of (downstream) one dataset."""
    return [found.edge for found in _step(conn, {dataset_id}, direction)]


def walk(
    conn: sa.Connection, dataset_id: int, direction: Direction, depth: int | None
) -> list[LineageEdge]:
    """Edges reachable from a dataset within ``depth`` hops (None: all), nearest first.

    ``both`` is the upstream walk followed by the downstream one, not every edge connected
    to the dataset: a sibling fed by the same source is not part of its lineage.
    """
    if direction == "both":
        upstream = walk(conn, dataset_id, "upstream", depth)
        return upstream + [
            e for e in walk(conn, dataset_id, "downstream", depth) if e not in upstream
        ]
    found: dict[int, LineageEdge] = {}
    reached = {dataset_id}
    frontier = {dataset_id}
    hops = 0
    # Cycles (a job writing back to its source) end the walk through `reached`.
    while frontier and (depth is None or hops < depth):
        hops += 1
        following: set[int] = set()
        for item in _step(conn, frontier, direction):
            found.setdefault(item.id, item.edge)
            following.add(item.source_id if direction == "upstream" else item.target_id)
        frontier = following - reached
        reached |= following
    return list(found.values())


def _step(conn: sa.Connection, ids: Collection[int], direction: Direction) -> list[_Found]:
    column = lineage_edges.c.target_id if direction == "upstream" else lineage_edges.c.source_id
    return _edges(conn, column.in_(sorted(ids)))


def _edges(conn: sa.Connection, condition: sa.ColumnElement[bool]) -> list[_Found]:
    rows = conn.execute(_EDGE_SELECT.where(condition)).all()
    runs = _run_ids(conn, [row.id for row in rows])
    return [_to_found(row, tuple(runs[row.id])) for row in rows]


def _run_ids(conn: sa.Connection, edge_ids: list[int]) -> dict[int, list[str]]:
    runs: dict[int, list[str]] = defaultdict(list)
    if edge_ids:
        query = (
            sa.select(lineage_runs.c.edge_id, lineage_runs.c.run_id)
            .where(lineage_runs.c.edge_id.in_(edge_ids))
            .order_by(lineage_runs.c.seen_at, lineage_runs.c.run_id)
        )
        for edge_id, run_id in conn.execute(query):
            runs[edge_id].append(run_id)
    return runs


def _to_found(row: sa.Row[Any], run_ids: tuple[str, ...]) -> _Found:
    m = row._mapping
    edge = LineageEdge(
        source=DatasetRef(m["source_system"], m["source_name"]),
        target=DatasetRef(m["target_system"], m["target_name"]),
        job=m["job"],
        job_kind=m["job_kind"],
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        last_run_id=m["last_run_id"],
        run_ids=run_ids,
    )
    return _Found(id=m["id"], source_id=m["source_id"], target_id=m["target_id"], edge=edge)
