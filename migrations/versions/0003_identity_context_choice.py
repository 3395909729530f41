"""identity context: when it was chosen, cancelled requests, the context of access tokens,
and the user a new link is for

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:22:22.247651
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context_link_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_access_tokens_context_link_id_identity_links"),
            "identity_links",
            ["context_link_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("pending_authorizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("denied_at", sa.DateTime(), nullable=True))

    with op.batch_alter_table("sso_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context_set_at", sa.DateTime(), nullable=True))

    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_user_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.drop_column("link_user_id")

    with op.batch_alter_table("sso_sessions", schema=None) as batch_op:
        batch_op.drop_column("context_set_at")

    with op.batch_alter_table("pending_authorizations", schema=None) as batch_op:
        batch_op.drop_column("denied_at")

    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_access_tokens_context_link_id_identity_links"), type_="foreignkey"
        )
        batch_op.drop_column("context_link_id")
