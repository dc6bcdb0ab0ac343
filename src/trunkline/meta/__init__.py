"""The metadata store: catalog of systems and datasets, owners, stats and lineage edges.

SQLite by default (``sqlite:///.trunkline/meta.db``), PostgreSQL for shared deployments
(``postgresql://...``, needs ``trunkline[postgres]``). See :class:`MetaStore`.
"""

from __future__ import annotations

from trunkline.meta._store import MetaStore
from trunkline.meta._types import (
    KEEP,
    Column,
    ColumnStats,
    Dataset,
    DatasetKind,
    DatasetLike,
    DatasetRef,
    Direction,
    Keep,
    LineageEdge,
    SchemaRef,
    System,
)

__all__ = [
    "KEEP",
    "Column",
    "ColumnStats",
    "Dataset",
    "DatasetKind",
    "DatasetLike",
    "DatasetRef",
    "Direction",
    "Keep",
    "LineageEdge",
    "MetaStore",
    "SchemaRef",
    "System",
]
