"""SMS codes bound to the browser that asked for them; the audit trail refuses TRUNCATE

A code could be checked from any browser, so a stranger's wrong guesses killed the owner's code
and spent the number's limits: each challenge now keeps the digest of its browser, and its
limits are looked up per number and browser. PostgreSQL's row triggers do not fire on TRUNCATE,
so the append-only audit trail gets a statement trigger for it (SQLite has no TRUNCATE).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("otp_challenges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("browser_hash", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.drop_index("ix_otp_challenges_phone_created_at")
        batch_op.create_index(
            "ix_otp_challenges_phone_browser_hash_created_at",
            ["phone", "browser_hash", "created_at"],
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"""
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
    with op.batch_alter_table("otp_challenges", schema=None) as batch_op:
        batch_op.drop_index("ix_otp_challenges_phone_browser_hash_created_at")
        batch_op.create_index("ix_otp_challenges_phone_created_at", ["phone", "created_at"])
        batch_op.drop_column("browser_hash")
