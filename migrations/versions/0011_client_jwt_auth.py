"""Client authentication with signed JWTs (private_key_jwt)

Issue #15 item 10: a client has a `token_endpoint_auth_method` (RFC 7591 2; OIDC Core 9), and a
`private_key_jwt` client the public keys its assertions are checked with: a JWK Set (`jwks`) or
where to fetch one (`jwks_uri`). Apps registered before keep what they did: a public app `none`,
a confidential one `client_secret_basic` (which also takes `client_secret_post`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "token_endpoint_auth_method",
                sa.String(length=32),
                server_default="client_secret_basic",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "jwks",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("jwks_uri", sa.String(length=2000), nullable=True))
    op.execute(
        sa.text(
            "UPDATE clients SET token_endpoint_auth_method = 'none' WHERE is_public = :yes"
        ).bindparams(yes=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("jwks_uri")
        batch_op.drop_column("jwks")
        batch_op.drop_column("token_endpoint_auth_method")
