"""Values the metadata store returns: systems, datasets, their columns and lineage edges."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias


class DatasetKind(enum.StrEnum):
    """What a dataset is inside its system."""

    TOPIC = "topic"
    TABLE = "table"
    VIEW = "view"
    FILESET = "fileset"
    #: An API that receives records (the ``http`` source's ``POST /topics/<topic>``).
    ENDPOINT = "endpoint"


class Keep(enum.Enum):
    """Type of :data:`KEEP`."""

    KEEP = "keep"

    def __repr__(self) -> str:
        return "KEEP"


#: Default of optional upsert arguments: leave the stored value as it is (empty on create).
#: ``None`` is a value of its own there: it clears the field.
KEEP: Final = Keep.KEEP

#: Which way :meth:`MetaStore.lineage` walks: towards sources, towards consumers, or both.
Direction: TypeAlias = Literal["upstream", "downstream", "both"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a dataset's schema, with its type as the system names it."""

    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class SchemaRef:
    """A schema registered in the schema registry: subject and version."""

    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset's identity: its system and its name there.

    ``str(ref)`` is the qualified name, ``system.name``, which :meth:`MetaStore.resolve`
    reads back.
    """

    system: str
    name: str

    def __str__(self) -> str:
        return f"{self.system}.{self.name}"


@dataclass(frozen=True, slots=True)
class System:
    """A place that holds datasets: the hub, a database, a warehouse, a lake.

    ``location`` never holds a secret: passwords are stripped before it is stored.
    """

    name: str
    kind: str
    location: str
    options: Mapping[str, Any] = field(hash=False)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Dataset:
    """A topic, table, view or set of files inside a system, with its catalog entries.

    ``rows`` and ``size_bytes`` are the last measured statistics (None: never measured);
    ``stats_updated_at`` says when and ``stats_source`` how (``pg_class.reltuples``,
    ``analyze``...). ``updated_at`` changes only when a catalog field changes.
    """

    system: str
    name: str
    kind: DatasetKind
    owner: str | None
    description: str | None
    tags: tuple[str, ...]
    schema_ref: SchemaRef | None
    columns: tuple[Column, ...] | None
    rows: int | None
    size_bytes: int | None
    stats_updated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    stats_source: str | None = None

    @property
    def ref(self) -> DatasetRef:
        return DatasetRef(self.system, self.name)

    @property
    def qualified_name(self) -> str:
        """``system.name``, e.g. ``pg.public.orders``."""
        return f"{self.system}.{self.name}"


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """Data flowed from ``source`` to ``target`` through a job.

    ``run_ids`` lists every run that recorded the edge, oldest first; ``last_run_id`` is the
    most recent one.
    """

    source: DatasetRef
    target: DatasetRef
    job: str
    job_kind: str
    first_seen: datetime
    last_seen: datetime
    last_run_id: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ColumnStats:
    """Statistics of one column, as the planner estimates with them.

    ``minimum`` and ``maximum`` are JSON scalars (numbers, or text: dates and timestamps as
    ISO strings); None means unknown. ``source`` says where they came from (``analyze``,
    ``pg_stats``, ``parquet metadata``...).
    """

    column: str
    distinct: int | None = None
    nulls: int | None = None
    minimum: Any = None
    maximum: Any = None
    avg_width: float | None = None
    source: str = "analyze"
    updated_at: datetime | None = None


#: What the lineage methods accept for a dataset: the value, its ref, or a name to resolve.
DatasetLike: TypeAlias = Dataset | DatasetRef | str


def frozen_options(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of a copy, so a returned System cannot be changed behind our back."""
    return MappingProxyType(dict(options))
