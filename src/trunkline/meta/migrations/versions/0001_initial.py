"""Initial catalog: systems, datasets, jobs and lineage.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Types are spelled out here rather than imported from ``_schema``: a migration is a snapshot
and must not change when the current table definitions do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(table: str, name: str, target: str) -> sa.Column[object]:
    # Named as _schema's naming convention would, so later migrations can drop them by name.
    referred = target.split(".")[0]
    return sa.Column(
        name,
        ID,
        sa.ForeignKey(target, ondelete="CASCADE", name=f"fk_{table}_{name}_{referred}"),
        nullable=False,
    )


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=f"pk_{table}")


def upgrade() -> None:
    op.create_table(
        "systems",
        sa.Column("id", ID, nullable=False),
        _pk("systems", "id"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("options", JSON, nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("name", name="uq_systems_name"),
    )
    op.create_table(
        "datasets",
        sa.Column("id", ID, nullable=False),
        _pk("datasets", "id"),
        _fk("datasets", "system_id", "systems.id"),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("schema_subject", sa.String(255), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=True),
        sa.Column("schema_columns", JSON, nullable=True),
        sa.Column("row_count", sa.BigInteger(), nullable=True),
        sa.Column("byte_count", sa.BigInteger(), nullable=True),
        _timestamp("stats_updated_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("system_id", "name", name="uq_datasets_system_id_name"),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"])
    op.create_table(
        "jobs",
        sa.Column("id", ID, nullable=False),
        _pk("jobs", "id"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("kind", "name", name="uq_jobs_kind_name"),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("id", ID, nullable=False),
        _pk("lineage_edges", "id"),
        _fk("lineage_edges", "source_id", "datasets.id"),
        _fk("lineage_edges", "target_id", "datasets.id"),
        _fk("lineage_edges", "job_id", "jobs.id"),
        _timestamp("first_seen"),
        _timestamp("last_seen"),
        sa.Column("last_run_id", sa.String(200), nullable=False),
        sa.UniqueConstraint(
            "source_id", "target_id", "job_id", name="uq_lineage_edges_source_id_target_id_job_id"
        ),
    )
    op.create_index("ix_lineage_edges_target_id", "lineage_edges", ["target_id"])
    op.create_index("ix_lineage_edges_job_id", "lineage_edges", ["job_id"])
    op.create_table(
        "lineage_runs",
        _fk("lineage_runs", "edge_id", "lineage_edges.id"),
        sa.Column("run_id", sa.String(200), nullable=False),
        _timestamp("seen_at"),
        _pk("lineage_runs", "edge_id", "run_id"),
    )


def downgrade() -> None:
    for table in ("lineage_runs", "lineage_edges", "jobs", "datasets", "systems"):
        op.drop_table(table)
