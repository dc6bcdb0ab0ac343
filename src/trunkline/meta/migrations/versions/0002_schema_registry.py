"""Schema registry: schemas by content, subject versions, references and configs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Types are spelled out here rather than imported from ``_schema`` (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "registry_schemas",
        sa.Column("id", ID, nullable=False),
        sa.Column("schema_type", sa.String(16), nullable=False),
        sa.Column("schema_text", sa.Text(), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_schemas"),
        sa.UniqueConstraint("fingerprint", name="uq_registry_schemas_fingerprint"),
    )
    op.create_table(
        "registry_references",
        sa.Column(
            "schema_id",
            ID,
            sa.ForeignKey(
                "registry_schemas.id",
                ondelete="CASCADE",
                name="fk_registry_references_schema_id_registry_schemas",
            ),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("schema_id", "position", name="pk_registry_references"),
    )
    op.create_index(
        "ix_registry_references_subject_version", "registry_references", ["subject", "version"]
    )
    op.create_table(
        "registry_versions",
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "schema_id",
            ID,
            sa.ForeignKey(
                "registry_schemas.id", name="fk_registry_versions_schema_id_registry_schemas"
            ),
            nullable=False,
        ),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("subject", "version", name="pk_registry_versions"),
    )
    op.create_index("ix_registry_versions_schema_id", "registry_versions", ["schema_id"])
    op.create_table(
        "registry_configs",
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("compatibility", sa.String(32), nullable=True),
        sa.Column("json_policy", sa.String(16), nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("subject", name="pk_registry_configs"),
    )


def downgrade() -> None:
    for table in ("registry_configs", "registry_versions", "registry_references"):
        op.drop_table(table)
    op.drop_table("registry_schemas")
