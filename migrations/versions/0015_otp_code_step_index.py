"""An index for the code step's lookup: a browser's latest code for a purpose

Issue #16 item 2: the sign-in and binding pages redirect after every POST, and their code step
finds the number from the live code this browser last asked for (`otp.code_step`): a query by
`browser_hash` and `purpose`, newest first, which no index served.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("otp_challenges", schema=None) as batch_op:
        batch_op.create_index(
            "ix_otp_challenges_browser_hash_purpose_created_at",
            ["browser_hash", "purpose", "created_at"],
        )


def downgrade() -> None:
    with op.batch_alter_table("otp_challenges", schema=None) as batch_op:
        batch_op.drop_index("ix_otp_challenges_browser_hash_purpose_created_at")
