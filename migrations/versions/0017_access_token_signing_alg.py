"""An app's access token signing algorithm: RS256 (the default) or ES256

Issue #17: signing an access token with RS256 (2048-bit) costs ~0.3 ms of CPU, with ES256
(P-256) a fraction of that; for `client_credentials` the signature is most of the request. An
app (a machine client, or one whose resource servers verify ES256) may opt in; every existing
app keeps RS256. ID tokens stay RS256 whatever the app says. The ES256 signing key itself is
made by the server at its next start (`iam.services.signing_keys.ensure_key`), not here.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "access_token_signing_alg",
                sa.String(length=10),
                server_default="RS256",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("access_token_signing_alg")
