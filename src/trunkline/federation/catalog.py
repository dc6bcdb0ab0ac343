"""Registering existing systems in the catalog, and measuring their datasets' statistics."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trunkline.engines._discover import Discovered, analyze, discover
from trunkline.engines._types import sql_type
from trunkline.errors import ConfigError, MissingDependency, NotFound
from trunkline.meta import Column, Dataset
from trunkline.project import HUB_SYSTEM, Project

#: System kinds ``trunkline catalog add`` knows.
KINDS = ("postgres", "duckdb", "parquet", "iceberg")


@dataclass(frozen=True, slots=True)
class Registered:
    """What :func:`add_system` stored: the system's datasets, and those it dropped."""

    datasets: list[Dataset]
    removed: list[str]


def _location(kind: str, location: str, root: Path) -> tuple[str, dict[str, Any]]:
    if kind == "postgres":
        from trunkline.engines.postgres import split_dsn

        return split_dsn(location)
    if kind == "iceberg":
        return _iceberg_location(location, root)
    path = Path(location)
    return str(path if path.is_absolute() else (root / path).resolve()), {}


def _iceberg_location(location: str, root: Path) -> tuple[str, dict[str, Any]]:
    """The SQL catalog URI ``location`` names: a ``sqlite:///`` file (relative to the project),
    a ``postgresql://`` server with its password as ``${VAR}`` (stored as ``password_env``,
    as for PostgreSQL systems), or a warehouse folder (or ``file://`` URI) holding the
    ``catalog.db`` the iceberg sink keeps there."""
    if importlib.util.find_spec("pyiceberg") is None:
        raise MissingDependency("pyiceberg", extra="iceberg")
    expected = (
        "expected a SQL catalog URI (sqlite:///path/catalog.db, "
        "postgresql://user:${VAR}@host/db) or a warehouse folder holding catalog.db"
    )
    if location.startswith("sqlite:///"):
        path = Path(location.removeprefix("sqlite:///"))
        path = path if path.is_absolute() else (root / path).resolve()
        if not path.is_file():
            raise ConfigError(f"iceberg catalog {location!r}: no SQLite file at {path}; {expected}")
        return f"sqlite:///{path}", {}
    if location.startswith(("postgresql://", "postgres://")):
        from trunkline.engines.postgres import split_dsn

        return split_dsn(location)
    if "://" in location and not location.startswith("file://"):
        raise ConfigError(f"iceberg catalog {location!r}: {expected}")
    folder = Path(location.removeprefix("file://"))
    folder = folder if folder.is_absolute() else (root / folder).resolve()
    if not (folder / "catalog.db").is_file():
        raise ConfigError(
            f"iceberg catalog {location!r}: found no catalog.db in {folder}; {expected}"
        )
    return f"sqlite:///{folder / 'catalog.db'}", {}


def add_system(
    project: Project, kind: str, name: str, location: str, env: Mapping[str, str] | None = None
) -> Registered:
    """Register system ``name`` of ``kind`` at ``location`` and discover its datasets.

    Datasets it no longer has are removed from the catalog. Passwords never reach the
    catalog: a PostgreSQL DSN takes its password as ``${VAR}``.

    Raises:
        ConfigError: an unknown kind, a literal password, an unsupported kind.
        EngineError: the system cannot be reached.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown system kind {kind!r}; expected one of {', '.join(KINDS)}")
    if name == HUB_SYSTEM:
        raise ConfigError(f"{HUB_SYSTEM!r} is the project's own hub; choose another name")
    stored, options = _location(kind, location, project.root)
    found = discover(kind, stored, options, os.environ if env is None else env)
    meta = project.meta
    meta.upsert_system(name, kind, stored, options)
    datasets = [_store(project, name, item) for item in found]
    keep = {item.name for item in found}
    removed = []
    for dataset in meta.list_datasets(system=name):
        if dataset.name not in keep:
            meta.delete_dataset(name, dataset.name)
            removed.append(dataset.name)
    return Registered(datasets, removed)


def _store(project: Project, system: str, item: Discovered) -> Dataset:
    meta = project.meta
    meta.upsert_dataset(system, item.name, item.kind, columns=item.columns)
    if item.column_stats:
        meta.set_column_stats(system, item.name, item.column_stats)
    return meta.set_stats(
        system, item.name, rows=item.rows, size_bytes=item.size_bytes, source=item.stats_source
    )


def analyze_dataset(project: Project, name: str, env: Mapping[str, str] | None = None) -> Dataset:
    """Measure rows, bytes and per-column statistics of one dataset into the catalog."""
    meta = project.meta
    dataset = meta.resolve(name)
    system = meta.get_system(dataset.system)
    if system.kind == "hub":
        return _analyze_topic(project, dataset)
    measured = analyze(
        system.kind,
        system.location,
        system.options,
        dataset.name,
        os.environ if env is None else env,
    )
    meta.set_column_stats(dataset.system, dataset.name, measured.columns)
    return meta.set_stats(
        dataset.system,
        dataset.name,
        rows=measured.rows,
        size_bytes=measured.size_bytes,
        source=measured.source,
    )


def _analyze_topic(project: Project, dataset: Dataset) -> Dataset:
    from trunkline.engines._discover import summarize
    from trunkline.engines.duckdb import DuckDBEngine
    from trunkline.federation.session import open_planner

    planner = open_planner(project)
    try:
        layout = planner.catalog.source(dataset)
        columns = tuple(Column(n, sql_type(t)) for n, t in layout.columns)
        project.meta.upsert_dataset(HUB_SYSTEM, dataset.name, "topic", columns=columns)
        quoted = '"' + dataset.qualified_name.replace('"', '""') + '"'
        table = planner.query(f"SELECT * FROM {quoted}")
    finally:
        planner.close()
    engine = DuckDBEngine()
    try:
        engine.connection.register("topic", table)
        measured = summarize(engine.connection, "topic", "analyze")
    finally:
        engine.close()
    project.meta.set_column_stats(HUB_SYSTEM, dataset.name, measured.columns)
    size = dataset.size_bytes
    return project.meta.set_stats(
        HUB_SYSTEM, dataset.name, rows=measured.rows, size_bytes=size, source="analyze"
    )


def analyze_all(project: Project, env: Mapping[str, str] | None = None) -> list[Dataset]:
    """Analyze every dataset of the catalog (topics after a catalog sync)."""
    project.sync_catalog()
    done = []
    for dataset in project.meta.list_datasets():
        if dataset.kind.value == "view":
            continue
        try:
            done.append(analyze_dataset(project, dataset.qualified_name, env))
        except NotFound:
            continue
    return done


#: The catalog system that holds views defined with ``trunkline catalog add view``.
VIEWS_SYSTEM = "views"


def add_view(project: Project, name: str, sql: str) -> Dataset:
    """Define view ``name`` as ``sql`` over catalog names (checked by planning it).

    A view that is ``SELECT * FROM a UNION ALL SELECT * FROM b`` of datasets with the same
    columns is a tiered table: scans of it run on each part with the same filters.

    Raises:
        PlanningError: the SQL does not plan (unknown names, types that differ across the
            parts of a tiered view...); nothing is stored then.
    """
    from trunkline.federation.session import open_planner
    from trunkline.planner import optimize
    from trunkline.planner.bind import bind_view

    planner = open_planner(project)
    try:
        optimized = optimize(bind_view(name, sql, planner.catalog))
    finally:
        planner.close()
    columns = tuple(
        Column(select.alias_or_name, select.type.sql("duckdb") if select.type else "VARCHAR")
        for select in optimized.selects
    )
    meta = project.meta
    meta.upsert_system(VIEWS_SYSTEM, "view", "catalog")
    meta.upsert_dataset(VIEWS_SYSTEM, name, "view", columns=columns or None)
    meta.set_view(VIEWS_SYSTEM, name, sql)
    return meta.get_dataset(VIEWS_SYSTEM, name)
