"""The metadata store's tables, in SQLAlchemy Core, as the latest migration leaves them.

Migrations under ``migrations/versions`` create and change these tables; the store's queries
use the definitions here. ``tests/unit/meta`` checks that both agree (Alembic's
``compare_metadata`` finds no difference after upgrading to head).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

# Named constraints let later migrations drop or alter them by name, including SQLite's
# batch mode, which rebuilds tables and would otherwise lose unnamed constraints.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: Longest names the store accepts; dataset names stay within PostgreSQL's btree entry limit.
SYSTEM_NAME_LENGTH = 100
DATASET_NAME_LENGTH = 512
SHORT_TEXT_LENGTH = 200


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (UTC).

    SQLite has no timezone-aware type: it gets naive UTC text. PostgreSQL gets
    ``timestamptz``, which comes back in the session's time zone and is converted here.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite autoincrements only an INTEGER PRIMARY KEY (a rowid alias), not a BIGINT one.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSONB on PostgreSQL so later queries can index into options and tags.
Json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _fk(column: str) -> sa.ForeignKey:
    # Deleting a system or dataset takes its catalog entries and lineage with it.
    return sa.ForeignKey(column, ondelete="CASCADE")


systems = sa.Table(
    "systems",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(SYSTEM_NAME_LENGTH), nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("location", sa.Text(), nullable=False),
    sa.Column("options", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("name"),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("system_id", Id, _fk("systems.id"), nullable=False),
    sa.Column("name", sa.String(DATASET_NAME_LENGTH), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("owner", sa.String(SHORT_TEXT_LENGTH), nullable=True),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("tags", Json, nullable=False),
    sa.Column("schema_subject", sa.String(255), nullable=True),
    sa.Column("schema_version", sa.Integer(), nullable=True),
    sa.Column("schema_columns", Json, nullable=True),
    sa.Column("row_count", sa.BigInteger(), nullable=True),
    sa.Column("byte_count", sa.BigInteger(), nullable=True),
    sa.Column("stats_updated_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Where row_count and byte_count came from (added by 0003): "pg_class.reltuples",
    # "analyze", "hub offsets"... EXPLAIN shows it beside every estimate.
    sa.Column("stats_source", sa.String(200), nullable=True),
    sa.UniqueConstraint("system_id", "name"),
    # resolve() looks names up across systems.
    sa.Index(None, "name"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(SHORT_TEXT_LENGTH), nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # A source and a sink may share a name in the project file; their kinds tell them apart.
    sa.UniqueConstraint("kind", "name"),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("source_id", Id, _fk("datasets.id"), nullable=False),
    sa.Column("target_id", Id, _fk("datasets.id"), nullable=False),
    sa.Column("job_id", Id, _fk("jobs.id"), nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.Column("last_run_id", sa.String(SHORT_TEXT_LENGTH), nullable=False),
    # Also serves downstream(): its leading column is source_id.
    sa.UniqueConstraint("source_id", "target_id", "job_id"),
    sa.Index(None, "target_id"),
    sa.Index(None, "job_id"),
)

lineage_runs = sa.Table(
    "lineage_runs",
    metadata,
    sa.Column("edge_id", Id, _fk("lineage_edges.id"), primary_key=True),
    sa.Column("run_id", sa.String(SHORT_TEXT_LENGTH), primary_key=True),
    sa.Column("seen_at", UTCDateTime(), nullable=False),
)

# Schema registry (trunkline.schemas) -------------------------------------------------------

#: Longest subject name; Confluent sets no limit, topic names stop at 249 characters.
SUBJECT_LENGTH = 255
#: The subject under which schema_configs keeps the registry-wide (global) config.
GLOBAL_CONFIG_SUBJECT = ""

# A schema by content: one row per distinct (type, canonical form, references); its id is the
# global schema id Confluent clients put in the wire format. Rows are never deleted, so an id
# never changes meaning.
registry_schemas = sa.Table(
    "registry_schemas",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("schema_type", sa.String(16), nullable=False),
    # The text as first registered (or its canonical form when registered with normalize).
    sa.Column("schema_text", sa.Text(), nullable=False),
    sa.Column("canonical", sa.Text(), nullable=False),
    # sha256 of type, canonical form and references: what makes two registrations one schema.
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("fingerprint"),
)

registry_references = sa.Table(
    "registry_references",
    metadata,
    sa.Column("schema_id", Id, _fk("registry_schemas.id"), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("subject", sa.String(SUBJECT_LENGTH), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    # referenced_by() and the delete guard look references up by what they point at.
    sa.Index(None, "subject", "version"),
)

registry_versions = sa.Table(
    "registry_versions",
    metadata,
    sa.Column("subject", sa.String(SUBJECT_LENGTH), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    # No cascade: schema rows outlive their versions.
    sa.Column("schema_id", Id, sa.ForeignKey("registry_schemas.id"), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "schema_id"),
)

registry_configs = sa.Table(
    "registry_configs",
    metadata,
    # GLOBAL_CONFIG_SUBJECT ("") holds the registry-wide config.
    sa.Column("subject", sa.String(SUBJECT_LENGTH), primary_key=True),
    sa.Column("compatibility", sa.String(32), nullable=True),
    sa.Column("json_policy", sa.String(16), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Planner statistics (trunkline.planner) ----------------------------------------------------

# Per-column statistics; min and max are JSON text so that numbers stay numbers and dates
# stay ISO strings whatever the database.
column_stats = sa.Table(
    "column_stats",
    metadata,
    sa.Column("dataset_id", Id, _fk("datasets.id"), primary_key=True),
    sa.Column("column_name", sa.String(DATASET_NAME_LENGTH), primary_key=True),
    sa.Column("distinct_count", sa.BigInteger(), nullable=True),
    sa.Column("null_count", sa.BigInteger(), nullable=True),
    sa.Column("min_value", sa.Text(), nullable=True),
    sa.Column("max_value", sa.Text(), nullable=True),
    sa.Column("avg_width", sa.Float(), nullable=True),
    sa.Column("source", sa.String(SHORT_TEXT_LENGTH), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Speed factors measured on this machine by `trunkline calibrate`, per engine.
engine_calibration = sa.Table(
    "engine_calibration",
    metadata,
    sa.Column("engine", sa.String(SYSTEM_NAME_LENGTH), primary_key=True),
    sa.Column("factor", sa.String(100), primary_key=True),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("measured_at", UTCDateTime(), nullable=False),
)

# The SQL of datasets of kind "view": queries over other catalog names.
dataset_views = sa.Table(
    "dataset_views",
    metadata,
    sa.Column("dataset_id", Id, _fk("datasets.id"), primary_key=True),
    sa.Column("sql", sa.Text(), nullable=False),
)

# Runtime coordination (trunkline.runtime) --------------------------------------------------

# A lease per exclusive task ("source-orders"): who runs it, until when (by the database's
# clock, in ms since the epoch), and a fencing token that grows with every acquisition, so a
# holder that lost its lease is recognised by the token it still carries.
runtime_leases = sa.Table(
    "runtime_leases",
    metadata,
    sa.Column("name", sa.String(SHORT_TEXT_LENGTH), primary_key=True),
    sa.Column("owner", sa.String(SHORT_TEXT_LENGTH), nullable=False),
    sa.Column("token", sa.BigInteger(), nullable=False),
    sa.Column("expires_ms", sa.BigInteger(), nullable=False),
    sa.Column("acquired_at", UTCDateTime(), nullable=False),
)

# A connector's checkpoint when the store is shared: the JSON text as the file store writes
# it, a version that grows with every save, and the fencing token of the lease it was saved
# under (a save carrying an older token is refused).
runtime_checkpoints = sa.Table(
    "runtime_checkpoints",
    metadata,
    sa.Column("name", sa.String(SHORT_TEXT_LENGTH), primary_key=True),
    sa.Column("document", sa.Text(), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("token", sa.BigInteger(), nullable=True),
    sa.Column("owner", sa.String(SHORT_TEXT_LENGTH), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# What each `trunkline run` process does, when the store is shared: the status document it
# also writes to its local status file (JSON text), replaced every status interval, with the
# heartbeat by the database's clock (ms since the epoch, so machines' clocks do not matter)
# and how old a heartbeat may grow before readers take the process for gone. A clean stop
# deletes the row; a killed process's row stays, and shows it gone.
runtime_processes = sa.Table(
    "runtime_processes",
    metadata,
    sa.Column("run_id", sa.String(SHORT_TEXT_LENGTH), primary_key=True),
    sa.Column("host", sa.String(SHORT_TEXT_LENGTH), nullable=False),
    sa.Column("pid", sa.BigInteger(), nullable=False),
    sa.Column("document", sa.Text(), nullable=False),
    sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
    sa.Column("stale_after_ms", sa.BigInteger(), nullable=False),
)
