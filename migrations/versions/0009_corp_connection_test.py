"""Each corporation's last connection test, and hiding a failing one from the login page

Issue #14 §5: the connection test (gettoken, then agent/get) is remembered per corporation:
when, whether it passed, and the problems it found. A failed test hides the corporation from
the login page until a test passes or an admin enables it explicitly (`hidden_by_test`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_corps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_tested_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_test_ok", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "last_test_problems",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("hidden_by_test", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("wecom_corps", schema=None) as batch_op:
        batch_op.drop_column("hidden_by_test")
        batch_op.drop_column("last_test_problems")
        batch_op.drop_column("last_test_ok")
        batch_op.drop_column("last_tested_at")
