"""The registry's queries, run on a connection inside a transaction the registry opened.

Tables are defined with the rest of the metadata store (``trunkline.meta._schema``) and
created by its migration ``0002_schema_registry``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trunkline.meta._schema import (
    GLOBAL_CONFIG_SUBJECT,
    registry_configs,
    registry_references,
    registry_schemas,
    registry_versions,
)
from trunkline.schemas._types import SchemaReference, SchemaType

_INSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}

#: Version rows with their schema's type, text and fingerprint, oldest first.
_VERSIONS = (
    sa.select(
        registry_versions.c.version,
        registry_versions.c.schema_id,
        registry_versions.c.deleted,
        registry_schemas.c.schema_type,
        registry_schemas.c.schema_text,
        registry_schemas.c.fingerprint,
    )
    .join(registry_schemas, registry_schemas.c.id == registry_versions.c.schema_id)
    .order_by(registry_versions.c.version)
)


def now() -> datetime:
    return datetime.now(UTC)


def fingerprint(
    schema_type: SchemaType, canonical: str, references: Sequence[SchemaReference]
) -> str:
    """What makes two registrations one schema: type, canonical form and references."""
    material = json.dumps(
        [schema_type.value, canonical, [r.to_dict() for r in references]],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def lock_subject(conn: sa.Connection, subject: str) -> None:
    """Serialise writers of one subject until the transaction ends.

    SQLite needs nothing: a write transaction holds the database's write lock from its
    start. PostgreSQL takes a transaction-scoped advisory lock keyed by the subject, so two
    processes registering under one subject cannot both pick the same next version.
    """
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"trunkline-registry:{subject}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def version_rows(conn: sa.Connection, subject: str) -> list[sa.Row[Any]]:
    return list(conn.execute(_VERSIONS.where(registry_versions.c.subject == subject)))


def subjects(conn: sa.Connection, *, deleted: bool) -> list[str]:
    query = sa.select(registry_versions.c.subject).distinct().order_by(registry_versions.c.subject)
    if not deleted:
        query = query.where(registry_versions.c.deleted.is_(False))
    return list(conn.execute(query).scalars())


def schema_row(conn: sa.Connection, schema_id: int) -> sa.Row[Any] | None:
    query = sa.select(registry_schemas).where(registry_schemas.c.id == schema_id)
    return conn.execute(query).first()


def references_of(conn: sa.Connection, schema_id: int) -> tuple[SchemaReference, ...]:
    query = (
        sa.select(registry_references)
        .where(registry_references.c.schema_id == schema_id)
        .order_by(registry_references.c.position)
    )
    return tuple(SchemaReference(row.name, row.subject, row.version) for row in conn.execute(query))


def usages(conn: sa.Connection, schema_id: int, *, deleted: bool) -> list[tuple[str, int]]:
    """(subject, version) pairs registered with ``schema_id``."""
    query = (
        sa.select(registry_versions.c.subject, registry_versions.c.version)
        .where(registry_versions.c.schema_id == schema_id)
        .order_by(registry_versions.c.subject, registry_versions.c.version)
    )
    if not deleted:
        query = query.where(registry_versions.c.deleted.is_(False))
    return [(row.subject, row.version) for row in conn.execute(query)]


def referrers(
    conn: sa.Connection, subject: str, version: int, *, deleted: bool
) -> list[tuple[int, str, int]]:
    """(schema id, subject, version) of the versions whose schema references this version."""
    query = (
        sa.select(
            registry_versions.c.schema_id, registry_versions.c.subject, registry_versions.c.version
        )
        .join(
            registry_references,
            registry_references.c.schema_id == registry_versions.c.schema_id,
        )
        .where(registry_references.c.subject == subject, registry_references.c.version == version)
        .order_by(registry_versions.c.schema_id)
    )
    if not deleted:
        query = query.where(registry_versions.c.deleted.is_(False))
    return [(row.schema_id, row.subject, row.version) for row in conn.execute(query)]


def insert_schema(
    conn: sa.Connection,
    schema_type: SchemaType,
    text: str,
    canonical: str,
    digest: str,
    references: Sequence[SchemaReference],
) -> int:
    """The id of the schema with fingerprint ``digest``, inserting it if it is new.

    Looked up first so that a PostgreSQL sequence is not spent on schemas that exist; the
    insert skips a row another process inserted meanwhile.
    """
    lookup = sa.select(registry_schemas.c.id).where(registry_schemas.c.fingerprint == digest)
    found = conn.execute(lookup).scalar()
    if found is not None:
        return int(found)
    values = {
        "schema_type": schema_type.value,
        "schema_text": text,
        "canonical": canonical,
        "fingerprint": digest,
        "created_at": now(),
    }
    statement = _INSERTS[conn.dialect.name](registry_schemas).values(**values)
    statement = statement.on_conflict_do_nothing(index_elements=["fingerprint"])
    inserted = conn.execute(statement.returning(registry_schemas.c.id)).scalar()
    if inserted is None:  # another transaction inserted it first
        return int(conn.execute(lookup).scalar_one())
    schema_id = int(inserted)
    if references:
        conn.execute(
            sa.insert(registry_references),
            [
                {
                    "schema_id": schema_id,
                    "position": position,
                    "name": ref.name,
                    "subject": ref.subject,
                    "version": ref.version,
                }
                for position, ref in enumerate(references)
            ],
        )
    return schema_id


def insert_version(conn: sa.Connection, subject: str, version: int, schema_id: int) -> None:
    conn.execute(
        sa.insert(registry_versions).values(
            subject=subject, version=version, schema_id=schema_id, deleted=False, created_at=now()
        )
    )


def mark_deleted(conn: sa.Connection, subject: str, versions: Sequence[int]) -> None:
    conn.execute(
        sa.update(registry_versions)
        .where(registry_versions.c.subject == subject, registry_versions.c.version.in_(versions))
        .values(deleted=True)
    )


def remove_versions(conn: sa.Connection, subject: str, versions: Sequence[int]) -> None:
    conn.execute(
        sa.delete(registry_versions).where(
            registry_versions.c.subject == subject, registry_versions.c.version.in_(versions)
        )
    )


# Configs: the global one is kept under GLOBAL_CONFIG_SUBJECT --------------------------------


def config_row(conn: sa.Connection, subject: str | None) -> sa.Row[Any] | None:
    key = GLOBAL_CONFIG_SUBJECT if subject is None else subject
    query = sa.select(registry_configs).where(registry_configs.c.subject == key)
    return conn.execute(query).first()


def put_config(conn: sa.Connection, subject: str | None, values: dict[str, Any]) -> None:
    key = GLOBAL_CONFIG_SUBJECT if subject is None else subject
    stamp = now()
    statement = _INSERTS[conn.dialect.name](registry_configs).values(
        subject=key, **values, updated_at=stamp
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["subject"], set_={**values, "updated_at": stamp}
        )
    )


def delete_config(conn: sa.Connection, subject: str | None) -> None:
    key = GLOBAL_CONFIG_SUBJECT if subject is None else subject
    conn.execute(sa.delete(registry_configs).where(registry_configs.c.subject == key))
