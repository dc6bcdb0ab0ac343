"""Engine adapters with capabilities as data: the hub, DuckDB, PostgreSQL, Iceberg and Spark.

The planner sees engines only through :class:`Engine`: what they declare they can run
(:class:`Capabilities`, asked through ``engine.can_run(step)``), the text they are sent
(``render``) and Arrow back (``run``). Drivers are imported by the engine modules only.

Example:
    >>> from trunkline.engines import Step
    >>> from trunkline.engines.duckdb import DuckDBEngine
    >>> bool(DuckDBEngine().can_run(Step(frozenset({"join", "aggregate"}))))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trunkline.engines._topics import RAW, LayoutLookup, TopicLayout
from trunkline.engines.base import (
    OPERATORS,
    Capabilities,
    Engine,
    Fragment,
    Source,
    Step,
    Verdict,
)
from trunkline.hub import Hub
from trunkline.meta import System
from trunkline.plugins import Registry

__all__ = [
    "ENGINES",
    "OPERATORS",
    "RAW",
    "Capabilities",
    "Engine",
    "Fragment",
    "LayoutLookup",
    "Source",
    "Step",
    "TopicLayout",
    "Verdict",
    "open_engines",
]

#: Engine classes by name; third-party engines register under the ``trunkline.engines``
#: entry-point group and are opened by :func:`open_engines` with ``extra`` engines.
ENGINES: Registry[Any] = Registry("engine", entry_point_group="trunkline.engines")
ENGINES.register("duckdb", "trunkline.engines.duckdb:DuckDBEngine")
ENGINES.register("hub", "trunkline.engines.hub:HubEngine")
ENGINES.register("postgres", "trunkline.engines.postgres:PostgresEngine", extra="postgres")
ENGINES.register("spark", "trunkline.engines.spark:SparkEngine", extra="spark")
ENGINES.register("iceberg", "trunkline.engines.iceberg:IcebergEngine", extra="iceberg")


def open_engines(
    systems: Sequence[System],
    *,
    hub: Hub | None,
    layouts: LayoutLookup,
    env: Mapping[str, str] | None = None,
    spark: Mapping[str, Any] | None = None,
) -> list[Engine]:
    """The engines for a catalog: DuckDB, the hub's, one per PostgreSQL system, one that
    scans every Iceberg system, and Spark when ``spark`` settings are given (``{}`` for the
    defaults).

    Nothing connects yet: database engines connect on their first step.
    """
    engines: list[Engine] = [ENGINES.get("duckdb")()]
    if hub is not None:
        engines.append(ENGINES.get("hub")(hub, layouts))
    postgres = [s for s in systems if s.kind == "postgres"]
    for system in postgres:
        engines.append(ENGINES.get("postgres")(system.name, system.location, system.options, env))
    if any(s.kind == "iceberg" for s in systems):
        engines.append(ENGINES.get("iceberg")(env=env))
    if spark is not None:
        connections = {s.name: (s.location, dict(s.options)) for s in postgres}
        engines.append(ENGINES.get("spark")(postgres=connections, env=env, **spark))
    return engines
