"""Finding catalog rows on an open connection, and the NotFound / AmbiguousName they raise.

Functions here run inside a transaction the store opened; they never open their own.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trunkline.errors import AmbiguousName, NotFound
from trunkline.meta import _validation as check
from trunkline.meta._schema import DATASET_NAME_LENGTH, SYSTEM_NAME_LENGTH, datasets, systems
from trunkline.meta._types import (
    Column,
    Dataset,
    DatasetKind,
    DatasetLike,
    DatasetRef,
    SchemaRef,
    System,
    frozen_options,
)

#: Dataset rows with their system's name, the shape :func:`to_dataset` reads.
DATASET_SELECT = sa.select(datasets, systems.c.name.label("system_name")).join(
    systems, systems.c.id == datasets.c.system_id
)

# INSERT ... ON CONFLICT DO NOTHING is spelled the same by both dialects, but each has its own
# construct for it.
_INSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def now() -> datetime:
    return datetime.now(UTC)


def insert_new(
    conn: sa.Connection, table: sa.Table, keys: Sequence[str], values: Mapping[str, Any]
) -> bool:
    """Insert a row unless one with the same ``keys`` exists; True if this call inserted it.

    Race-free on both backends: of two concurrent callers exactly one inserts, the other
    then finds the row (and locks it with ``SELECT ... FOR UPDATE`` to change it).
    """
    statement = _INSERTS[conn.dialect.name](table).values(**values)
    result = conn.execute(statement.on_conflict_do_nothing(index_elements=list(keys)))
    return bool(result.rowcount == 1)


def changed(row: sa.Row[Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``wanted`` that differ from ``row``."""
    current = row._mapping
    return {key: value for key, value in wanted.items() if current[key] != value}


def suggestion(name: str, candidates: Iterable[str], what: str) -> str:
    """The end of a NotFound message: a "did you mean", or a hint that there is nothing yet."""
    pool = sorted(set(candidates))
    if not pool:
        return f" (the catalog has no {what} yet)"
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


# Systems -----------------------------------------------------------------------------------


def system_row(conn: sa.Connection, name: str, *, lock: bool = False) -> sa.Row[Any]:
    query = sa.select(systems).where(systems.c.name == name)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        known = conn.execute(sa.select(systems.c.name)).scalars()
        raise NotFound(f"system {name!r} does not exist{suggestion(name, known, 'systems')}")
    return row


def to_system(row: sa.Row[Any]) -> System:
    m = row._mapping
    return System(
        name=m["name"],
        kind=m["kind"],
        location=m["location"],
        options=frozen_options(m["options"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


# Datasets ----------------------------------------------------------------------------------


def dataset_row(conn: sa.Connection, system: str, name: str) -> sa.Row[Any]:
    """The dataset ``name`` of ``system``; NotFound names whichever of the two is missing."""
    query = DATASET_SELECT.where(systems.c.name == system, datasets.c.name == name)
    row = conn.execute(query).first()
    if row is None:
        system_id = system_row(conn, system).id
        known = conn.execute(
            sa.select(datasets.c.name).where(datasets.c.system_id == system_id)
        ).scalars()
        hint = suggestion(name, known, f"datasets in system {system!r}")
        raise NotFound(f"dataset {name!r} does not exist in system {system!r}{hint}")
    return row


def resolve_row(conn: sa.Connection, name: str) -> sa.Row[Any]:
    """The dataset a user means by ``name``; see :meth:`MetaStore.resolve` for the rules."""
    name = check.text("dataset name", name, limit=SYSTEM_NAME_LENGTH + 1 + DATASET_NAME_LENGTH)
    system, dot, rest = name.partition(".")
    if dot:
        query = DATASET_SELECT.where(systems.c.name == system, datasets.c.name == rest)
        exact = conn.execute(query).first()
        if exact is not None:
            return exact
    # SQLite's LIKE ignores case: the SQL narrows, the comparison below decides.
    query = DATASET_SELECT.where(
        sa.or_(datasets.c.name == name, datasets.c.name.endswith("." + name, autoescape=True))
    ).order_by(systems.c.name, datasets.c.name)
    matches = [
        row for row in conn.execute(query) if row.name == name or row.name.endswith("." + name)
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        candidates = tuple(f"{row.system_name}.{row.name}" for row in matches)
        raise AmbiguousName(
            f"dataset name {name!r} is ambiguous: it matches {', '.join(candidates)}; "
            "write the one you mean in full (system.name)",
            candidates=candidates,
        )
    raise NotFound(f"no dataset is called {name!r}{_resolve_hint(conn, name)}")


def _resolve_hint(conn: sa.Connection, name: str) -> str:
    # Offer qualified names, full names and last name parts, each pointing at the qualified name.
    spellings: dict[str, str] = {}
    for system, dataset in conn.execute(sa.select(systems.c.name, datasets.c.name).join(datasets)):
        qualified = f"{system}.{dataset}"
        for spelling in (qualified, dataset, dataset.rpartition(".")[2]):
            spellings.setdefault(spelling, qualified)
    if not spellings:
        return " (the catalog has no datasets yet)"
    close = difflib.get_close_matches(name, list(spellings), n=5, cutoff=0.6)
    meant = list(dict.fromkeys(spellings[spelling] for spelling in close))[:3]
    if not meant:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in meant) + "?"


def dataset_id(conn: sa.Connection, dataset: DatasetLike) -> int:
    """The row id of a dataset given as a Dataset, a DatasetRef or a name to resolve."""
    if isinstance(dataset, str):
        return int(resolve_row(conn, dataset).id)
    if isinstance(dataset, Dataset):
        dataset = dataset.ref
    if not isinstance(dataset, DatasetRef):
        raise TypeError(f"expected a Dataset, DatasetRef or name, not {dataset!r}")
    return int(dataset_row(conn, dataset.system, dataset.name).id)


def to_dataset(row: sa.Row[Any]) -> Dataset:
    m = row._mapping
    subject, version = m["schema_subject"], m["schema_version"]
    stored_columns = m["schema_columns"]
    return Dataset(
        system=m["system_name"],
        name=m["name"],
        kind=DatasetKind(m["kind"]),
        owner=m["owner"],
        description=m["description"],
        tags=tuple(m["tags"]),
        schema_ref=None if subject is None else SchemaRef(subject, version),
        columns=None
        if stored_columns is None
        else tuple(Column(c["name"], c["type"], c["nullable"]) for c in stored_columns),
        rows=m["row_count"],
        size_bytes=m["byte_count"],
        stats_updated_at=m["stats_updated_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        stats_source=m["stats_source"],
    )
