"""Workbench launch links and the second, consented WeCom round

Issue #14: a client may have an `initiate_login_uri` (OIDC Core 4, third-party-initiated login)
for the links a WeCom workbench opens; an outside login and a binding remember where to go
once signed in when no authorization request waits (`return_to`); an outside login remembers
whether it is the second round that asks for private data (`private_round`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("initiate_login_uri", sa.String(length=2000), nullable=True))
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_to", sa.String(length=4096), nullable=True))
        batch_op.add_column(
            sa.Column("private_round", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("pending_bindings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_to", sa.String(length=4096), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_bindings", schema=None) as batch_op:
        batch_op.drop_column("return_to")
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.drop_column("private_round")
        batch_op.drop_column("return_to")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("initiate_login_uri")
