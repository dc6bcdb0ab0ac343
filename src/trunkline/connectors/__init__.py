"""Connectors: sources that write into the hub and sinks that read from it.

A project file names a connector by its ``type:``, which is its name in :data:`SOURCES` or
:data:`SINKS`. The connector class exposes its settings as a pydantic model in the class
attribute ``Config`` (a :class:`trunkline.config.ConfigModel`); the rest of the project-file
entry is validated by that model.

Built-ins are registered below as lazy ``"module:Class"`` strings, so listing names imports
no connector. Third-party packages add theirs through the ``trunkline.sources`` and
``trunkline.sinks`` entry-point groups. The interfaces are in :mod:`trunkline.connectors.base`;
every connector passes :mod:`trunkline.testing.connectors`.
"""

from __future__ import annotations

from typing import Any

from trunkline.plugins import Registry

__all__ = ["SINKS", "SOURCES"]

#: Source connectors (they write into the hub), by project-file ``type:``.
SOURCES: Registry[type[Any]] = Registry("source", entry_point_group="trunkline.sources")
#: Sink connectors (they read from the hub), by project-file ``type:``.
SINKS: Registry[type[Any]] = Registry("sink", entry_point_group="trunkline.sinks")

SOURCES.register("files", "trunkline.connectors.sources.files:FilesSource")
SOURCES.register("http", "trunkline.connectors.sources.http:HttpSource")
SOURCES.register(
    "postgres_cdc", "trunkline.connectors.sources.postgres_cdc:PostgresCdcSource", extra="postgres"
)
SINKS.register("duckdb", "trunkline.connectors.sinks.duckdb:DuckDBSink")
SINKS.register("parquet", "trunkline.connectors.sinks.parquet:ParquetSink")
SINKS.register("postgres", "trunkline.connectors.sinks.postgres:PostgresSink", extra="postgres")
SINKS.register("iceberg", "trunkline.connectors.sinks.iceberg:IcebergSink", extra="iceberg")
