"""Indexes for a million people: the users list's keyset pages, trigram search, the audit filters

Issue #17 (scale): with 1,000,000 users, 2,000,000 links and 10,000,000 audit events on
PostgreSQL, the admin console's users list (ORDER BY created_at, id with OFFSET), its searches
(`lower(name) LIKE '%x%'` and the like) and some of the audit trail's filters were sequential
scans. This adds:

- `ix_users_created_at_id`: the list's order, so a page is read from the index (keyset
  pagination, `iam.services.users.search_users`). Both databases.
- PostgreSQL only, trigram GIN indexes (pg_trgm) on `lower(users.name)`, `lower(users.email)`,
  `users.phone` and `lower(identity_links.provider_user_id)`: what the search's `LIKE '%x%'`
  (three characters or more) is answered from. SQLite scans (small deployments).
- the audit trail's event filter as `(event, id)` (an exact event or a prefix `login.`, paged
  newest first by id), replacing `ix_audit_events_event`, and a person's trail as
  `(user_id, id)`, replacing `ix_audit_events_user_id`.

pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner, or a role with CREATE on
the database, may create it. Where the role may not, the upgrade logs a warning and goes on
without the trigram indexes: searches still answer, scanning as before, and the schema is
otherwise complete. Failing the upgrade instead would hold back every other change of the
release for a speed-up; the warning says what a superuser runs to add them later.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: (index, table, expression): the trigram indexes, as `iam.db.models._trigram` defines them.
TRIGRAM = [
    ("ix_users_name_trgm", "users", "lower(name)"),
    ("ix_users_email_trgm", "users", "lower(email)"),
    ("ix_users_phone_trgm", "users", "phone"),
    ("ix_identity_links_provider_user_id_trgm", "identity_links", "lower(provider_user_id)"),
]


def _trigram_ddl() -> list[str]:
    return [
        f"CREATE INDEX {name} ON {table} USING gin ({expression} gin_trgm_ops)"
        for name, table, expression in TRIGRAM
    ]


def _has_pg_trgm(connection: sa.Connection) -> bool:
    """pg_trgm is in this database, made now if it was not; False when this role may not."""
    installed = sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    if connection.execute(installed).first() is not None:
        return True
    try:
        with connection.begin_nested():  # a savepoint: a refusal leaves the upgrade going
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as refused:
        log.warning(
            "pg_trgm could not be created (%s): the users search runs without its trigram "
            "indexes (a scan of every person). To add them, a superuser runs in this "
            "database: CREATE EXTENSION pg_trgm; %s;",
            str(refused.orig).strip().splitlines()[0],
            "; ".join(_trigram_ddl()),
        )
        return False
    return True


def upgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index("ix_users_created_at_id", ["created_at", "id"])
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_event")
        batch_op.create_index(
            "ix_audit_events_event_id",
            ["event", "id"],
            postgresql_ops={"event": "varchar_pattern_ops"},
        )
        batch_op.drop_index("ix_audit_events_user_id")
        batch_op.create_index("ix_audit_events_user_id_id", ["user_id", "id"])
    if connection.dialect.name == "postgresql" and _has_pg_trgm(connection):
        for statement in _trigram_ddl():
            op.execute(statement)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        for name, _, _ in TRIGRAM:  # absent when pg_trgm could not be made
            op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_user_id_id")
        batch_op.create_index("ix_audit_events_user_id", ["user_id"])
        batch_op.drop_index("ix_audit_events_event_id")
        batch_op.create_index("ix_audit_events_event", ["event"])
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_created_at_id")
