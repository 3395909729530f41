"""WeCom directory events, and why and when a link was disabled

Links follow the WeCom directory (issue #13): a corporation's encrypted change events are kept
(once each: the digest of the ciphertext is unique, WeCom retries), and a link disabled because
its member left says when and why.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wecom_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("ciphertext_hash", sa.String(length=64), nullable=False),
        sa.Column("change_type", sa.String(length=64), nullable=False),
        sa.Column(
            "fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["corp_id"], ["wecom_corps.corp_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ciphertext_hash"),
    )
    op.create_index("ix_wecom_events_handled_at", "wecom_events", ["handled_at"])
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("disabled_reason", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("disabled_at")
    op.drop_index("ix_wecom_events_handled_at", table_name="wecom_events")
    op.drop_table("wecom_events")
