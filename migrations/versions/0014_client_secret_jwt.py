"""Client secrets kept encrypted for `client_secret_jwt` clients

Issue #15 item 10: a client registered with `client_secret_jwt` (RFC 7523, OIDC Core 9) signs
its assertion with an HMAC keyed by its secret, so the server needs the secret itself, not only
its digest: for such a client (and only for it) the current and the previous secret are also
kept encrypted with the at-rest key, like WeCom app secrets. Existing clients get none.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("previous_secret_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_encrypted")
        batch_op.drop_column("secret_encrypted")
