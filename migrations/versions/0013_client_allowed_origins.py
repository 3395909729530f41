"""The origins a single-page app calls the token endpoints from (CORS)

Issue #15 item 11: a client may list `allowed_origins` (`scheme://host[:port]`) besides the
origins of its redirect URIs; `/token`, `/userinfo`, `/revoke`, JWKS and discovery answer CORS
for those origins and no others. Existing clients get an empty list.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 08:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "allowed_origins",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default="[]",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("allowed_origins")
