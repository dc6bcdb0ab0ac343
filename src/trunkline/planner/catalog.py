"""The planner's view of the catalog: names in SQL to relations, with their statistics.

A relation is what one name in a query stands for: one dataset, or a *tiered* view whose
parts live in different systems (``lineitem`` = the lake's history ``UNION ALL`` the hub's
newest records). Every part has the same columns; scans of a tiered relation run on each
part with the same filters and projections.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from trunkline.engines._topics import LayoutLookup
from trunkline.engines._types import arrow_type, same_kind, sql_type
from trunkline.engines.base import Source
from trunkline.errors import AmbiguousName, NotFound, PlanningError
from trunkline.meta import Dataset, MetaStore, System
from trunkline.planner.statistics import RelationStats, relation_stats

#: The sqlglot dialect each kind of system writes its column types in.
TYPE_DIALECTS = {"postgres": "postgres", "spark": "spark"}


@dataclass(frozen=True, slots=True)
class Relation:
    """A name of a query, bound: its id in plans, its parts and their statistics."""

    id: str
    name: str
    parts: tuple[Source, ...]
    stats: tuple[RelationStats, ...]

    @property
    def columns(self) -> tuple[tuple[str, pa.DataType], ...]:
        return self.parts[0].columns

    @property
    def rows(self) -> float:
        return sum(s.rows for s in self.stats)


class Catalog:
    """Resolves names against the metadata store; caches what one planning session reads."""

    def __init__(self, meta: MetaStore, layouts: LayoutLookup) -> None:
        self.meta = meta
        self.layouts = layouts
        self._systems: dict[str, System] = {}

    def dataset(self, name: str) -> Dataset:
        """The dataset ``name`` means (``system.name`` or a unique short name).

        Raises:
            PlanningError: unknown (with a "did you mean") or ambiguous.
        """
        try:
            return self.meta.resolve(name)
        except AmbiguousName as exc:
            raise PlanningError(str(exc), construct=name, candidates=exc.candidates) from None
        except NotFound as exc:
            raise PlanningError(
                f"unknown table {name!r}: {exc}".replace(f": no dataset is called {name!r}", ""),
                construct=name,
            ) from None

    def system(self, name: str) -> System:
        if name not in self._systems:
            self._systems[name] = self.meta.get_system(name)
        return self._systems[name]

    def source(self, dataset: Dataset, *, state: bool = False) -> Source:
        """Where ``dataset`` is and its columns as Arrow types."""
        system = self.system(dataset.system)
        if system.kind == "hub":
            layout = self.layouts(dataset.name)
            columns = layout.state_columns if state else layout.columns
            if state and not columns:
                raise PlanningError(
                    f"state({dataset.qualified_name}): the topic's values are not Debezium "
                    "change events (their schema needs before, after, op and source, with "
                    "'after' an object)",
                    construct="state",
                )
        else:
            if state:
                raise PlanningError(
                    f"state() reads Debezium topics; {dataset.qualified_name} is a "
                    f"{dataset.kind.value}",
                    construct="state",
                )
            if dataset.columns is None:
                raise PlanningError(
                    f"{dataset.qualified_name} has no known columns; register its system "
                    "again with trunkline catalog add to discover them",
                    construct=dataset.qualified_name,
                )
            dialect = TYPE_DIALECTS.get(system.kind, "duckdb")
            columns = tuple((c.name, arrow_type(c.type, dialect)) for c in dataset.columns)
        return Source(
            system=system.name,
            system_kind=system.kind,
            location=system.location,
            name=dataset.name,
            columns=columns,
            options=dict(system.options),
            state_of=state,
        )

    def stats(self, dataset: Dataset, source: Source) -> RelationStats:
        """The dataset's statistics as estimates use them."""
        columns = {} if source.state_of else self.meta.column_stats(dataset.system, dataset.name)
        origin = dataset.stats_source or ("catalog" if dataset.rows is not None else None)
        return relation_stats(dataset.rows, dataset.size_bytes, origin, source.columns, columns)

    def view_sql(self, dataset: Dataset) -> str | None:
        return self.meta.view_sql(dataset.system, dataset.name)


def check_tiers(name: str, parts: list[tuple[str, Source]]) -> tuple[Source, ...]:
    """The parts of a tiered view, with columns matched by name to the first part.

    Raises:
        PlanningError: a part lacks a column of the first, or types differ across sources.
    """
    first_name, first = parts[0]
    result = [first]
    for part_name, part in parts[1:]:
        own = dict(part.columns)
        columns = []
        for column, kind in first.columns:
            if column not in own:
                close = difflib.get_close_matches(column, list(own), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise PlanningError(
                    f"view {name!r}: {part_name} has no column {column!r}, which "
                    f"{first_name} has{hint}",
                    construct=column,
                )
            if not same_kind(kind, own[column]):
                raise PlanningError(
                    f"view {name!r}: column {column!r} is {sql_type(kind)} in {first_name} "
                    f"but {sql_type(own[column])} in {part_name}; types must match across "
                    "sources (cast one of them in a view of its own)",
                    construct=column,
                )
            columns.append((column, kind))
        result.append(_with_columns(part, tuple(columns)))
    return tuple(result)


def _with_columns(source: Source, columns: tuple[tuple[str, Any], ...]) -> Source:
    return Source(
        system=source.system,
        system_kind=source.system_kind,
        location=source.location,
        name=source.name,
        columns=columns,
        options=source.options,
        state_of=source.state_of,
    )
