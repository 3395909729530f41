"""WeCom corporations keep their app's callback settings ("接收事件服务器": Token, EncodingAESKey)

Both are encrypted at rest like the app secret, and both are null until an admin sets them: a
corporation connected before this revision, or without events, has none.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_corps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_token_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("encoding_aes_key_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wecom_corps", schema=None) as batch_op:
        batch_op.drop_column("encoding_aes_key_encrypted")
        batch_op.drop_column("callback_token_encrypted")
