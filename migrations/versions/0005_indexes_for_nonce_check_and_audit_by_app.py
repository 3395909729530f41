"""indexes for the nonce check of every authorization and for the audit trail of one app

The nonce check ("is a live code of this client holding this nonce?") scanned the whole table of
codes, which keeps used codes (a replayed code must still find its family): every authorization
got slower as codes piled up. The audit trail filtered by app scanned every event; the index
also gives its pages (newest first, by id) in order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorization_codes_client_id_nonce"), ["client_id", "nonce"]
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_client_id_id"), ["client_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_client_id_id"))
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_codes_client_id_nonce"))
