"""Back-channel logout (OIDC Back-Channel Logout 1.0)

Issue #15: a client may have a `backchannel_logout_uri`; the logout tokens owed to such apps
when a session ends wait in `backchannel_logouts` (written with the session's end, sent after
it commits, retried, claimed with a lease so two instances never both send one).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("backchannel_logout_uri", sa.String(length=2000), nullable=True)
        )
    op.create_table(
        "backchannel_logouts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sid", "client_id", name="uq_backchannel_logouts_sid_client_id"),
    )
    op.create_index(
        "ix_backchannel_logouts_status_next_attempt_at",
        "backchannel_logouts",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_backchannel_logouts_status_next_attempt_at", table_name="backchannel_logouts")
    op.drop_table("backchannel_logouts")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("backchannel_logout_uri")
