"""Runtime status in a shared store: one row per `trunkline run` process.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Types are spelled out here rather than imported from ``_schema`` (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runtime_processes",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("stale_after_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_runtime_processes"),
    )


def downgrade() -> None:
    op.drop_table("runtime_processes")
