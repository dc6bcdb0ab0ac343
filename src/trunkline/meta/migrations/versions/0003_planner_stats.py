"""Planner statistics: per-column stats, where dataset stats came from, engine calibration
and catalog views.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Types are spelled out here rather than imported from ``_schema`` (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _dataset_fk(table: str) -> sa.Column[object]:
    return sa.Column(
        "dataset_id",
        ID,
        sa.ForeignKey("datasets.id", ondelete="CASCADE", name=f"fk_{table}_dataset_id_datasets"),
        nullable=False,
    )


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("stats_source", sa.String(200), nullable=True))
    op.create_table(
        "column_stats",
        _dataset_fk("column_stats"),
        sa.Column("column_name", sa.String(512), nullable=False),
        sa.Column("distinct_count", sa.BigInteger(), nullable=True),
        sa.Column("null_count", sa.BigInteger(), nullable=True),
        sa.Column("min_value", sa.Text(), nullable=True),
        sa.Column("max_value", sa.Text(), nullable=True),
        sa.Column("avg_width", sa.Float(), nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("dataset_id", "column_name", name="pk_column_stats"),
    )
    op.create_table(
        "engine_calibration",
        sa.Column("engine", sa.String(100), nullable=False),
        sa.Column("factor", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        _timestamp("measured_at"),
        sa.PrimaryKeyConstraint("engine", "factor", name="pk_engine_calibration"),
    )
    op.create_table(
        "dataset_views",
        _dataset_fk("dataset_views"),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_dataset_views"),
    )


def downgrade() -> None:
    for table in ("dataset_views", "engine_calibration", "column_stats"):
        op.drop_table(table)
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("stats_source")
