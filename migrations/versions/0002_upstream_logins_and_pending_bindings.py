"""upstream logins (WeCom state) and pending bindings (on-demand binding)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:12:00.812652
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_bindings",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "identity",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("flow_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_bindings")),
    )
    with op.batch_alter_table("pending_bindings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_bindings_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "upstream_logins",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("connector_id", sa.String(length=64), nullable=False),
        sa.Column("flow_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_logins")),
    )
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upstream_logins_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upstream_logins_expires_at"))

    op.drop_table("upstream_logins")
    with op.batch_alter_table("pending_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_bindings_expires_at"))

    op.drop_table("pending_bindings")
