"""Every key the users search reads, in one column of the person kept by the database

Issue #17 (scale): at 1,000,000 people and 2,000,000 links the admin's search read its keys
from two tables, a union of one select per key (a name, an email, a phone, a linked WeCom
userid). A broad needle ("wang") collected thousands of ids before the page could be ordered
(190 ms), and a needle under three characters had no index at all (a 2-character name such as
王伟, or 王 alone: 1 s, every person read).

`users.search_text` holds the keys the search reads, lowercased as before (the database's
`lower()`), each after a unit separator (U+001F, which no search may contain):
`name ␟ email ␟ phone ␟ userid ␟ userid ...` (every link's `provider_user_id`). One table, one
column: the planner weighs the index against walking the list in its own order by the needle's
own statistics. PostgreSQL gets two GIN indexes on it:

- `ix_users_search_trgm` (pg_trgm, where it could be made: see 0016) for three characters and
  more;
- `ix_users_search_chars` on `string_to_array(search_text, NULL)`, the text's characters, for
  one or two: the rows holding every character of the needle, then the LIKE itself.

The database keeps the column (triggers, both dialects), so every writer (the services, the
CLI, a bulk import in SQL) keeps it true: a person's insert and a change of their name, email or
phone; a link's insert, delete, or change of `provider_user_id` or `user_id`. On SQLite, a
later migration that rebuilds `users` or `identity_links` (batch "move and copy") drops their
triggers and must make them again.

The trigram indexes only the search read go: `ix_users_email_trgm` and
`ix_identity_links_provider_user_id_trgm`. `ix_users_name_trgm` and `ix_users_phone_trgm` stay
for the audit trail's person filter (a name, a phone's last digits).

At 1M people the fill took 34 s and the two indexes 30 s here.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: The search text of the row `users` names, in SQLite's SQL (`char`, `group_concat`).
SQLITE_TEXT = (
    "lower(users.name) || char(31) || lower(coalesce(users.email, '')) || char(31)"
    " || coalesce(users.phone, '') || coalesce((SELECT group_concat(char(31)"
    " || lower(l.provider_user_id), '') FROM identity_links l WHERE l.user_id = users.id), '')"
)
SQLITE_REFRESH = f"UPDATE users SET search_text = {SQLITE_TEXT} WHERE id = "  # noqa: S608 - constant
SQLITE_TRIGGERS = {
    "users_search_text_insert": "AFTER INSERT ON users",
    "users_search_text_update": "AFTER UPDATE OF name, email, phone ON users",
    "identity_links_search_text_insert": "AFTER INSERT ON identity_links",
    "identity_links_search_text_delete": "AFTER DELETE ON identity_links",
    "identity_links_search_text_update": (
        "AFTER UPDATE OF provider_user_id, user_id ON identity_links"
    ),
}
SQLITE_BODIES = {
    "users_search_text_insert": SQLITE_REFRESH + "NEW.id;",
    "users_search_text_update": SQLITE_REFRESH + "NEW.id;",
    "identity_links_search_text_insert": SQLITE_REFRESH + "NEW.user_id;",
    "identity_links_search_text_delete": SQLITE_REFRESH + "OLD.user_id;",
    "identity_links_search_text_update": (
        SQLITE_REFRESH + "OLD.user_id; " + SQLITE_REFRESH + "NEW.user_id;"
    ),
}

#: PostgreSQL: the person's own trigger writes the text (before the row is stored); a link's
#: trigger has its person's rewritten by naming the column in an UPDATE.
POSTGRES_FUNCTIONS = [
    """CREATE FUNCTION iam_users_search_text() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      NEW.search_text := lower(NEW.name) || chr(31) || lower(coalesce(NEW.email, '')) || chr(31)
        || coalesce(NEW.phone, '') || coalesce((SELECT string_agg(chr(31)
        || lower(l.provider_user_id), '') FROM identity_links l WHERE l.user_id = NEW.id), '');
      RETURN NEW;
    END $$""",
    """CREATE FUNCTION iam_identity_links_search_text() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP <> 'INSERT' THEN
        UPDATE users SET search_text = '' WHERE id = OLD.user_id;
      END IF;
      IF TG_OP <> 'DELETE' THEN
        UPDATE users SET search_text = '' WHERE id = NEW.user_id;
      END IF;
      RETURN NULL;
    END $$""",
]
POSTGRES_TRIGGERS = [
    """CREATE TRIGGER users_search_text
    BEFORE INSERT OR UPDATE OF name, email, phone, search_text ON users
    FOR EACH ROW EXECUTE FUNCTION iam_users_search_text()""",
    """CREATE TRIGGER identity_links_search_text
    AFTER INSERT OR DELETE OR UPDATE OF provider_user_id, user_id ON identity_links
    FOR EACH ROW EXECUTE FUNCTION iam_identity_links_search_text()""",
]
CHARS_INDEX = (
    "CREATE INDEX ix_users_search_chars ON users USING gin (string_to_array(search_text, NULL))"
)
TRIGRAM_INDEX = "CREATE INDEX ix_users_search_trgm ON users USING gin (search_text gin_trgm_ops)"
#: (index, table, expression): the trigram indexes of 0016 that only the users search read.
DROPPED_TRIGRAM = [
    ("ix_users_email_trgm", "users", "lower(email)"),
    ("ix_identity_links_provider_user_id_trgm", "identity_links", "lower(provider_user_id)"),
]


def _has_pg_trgm(connection: sa.Connection) -> bool:
    installed = sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    return connection.execute(installed).first() is not None


def upgrade() -> None:
    connection = op.get_bind()
    op.add_column("users", sa.Column("search_text", sa.Text(), server_default="", nullable=False))
    if connection.dialect.name != "postgresql":
        for name, when in SQLITE_TRIGGERS.items():
            body = SQLITE_BODIES[name]
            op.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN {body} END")
        op.execute(f"UPDATE users SET search_text = {SQLITE_TEXT}")  # noqa: S608 - constant
        return
    for statement in POSTGRES_FUNCTIONS + POSTGRES_TRIGGERS:
        op.execute(statement)
    op.execute("UPDATE users SET search_text = ''")  # the trigger writes each person's
    op.execute(CHARS_INDEX)
    if _has_pg_trgm(connection):  # 0016 made it, or said why it could not
        op.execute(TRIGRAM_INDEX)
        for name, _, _ in DROPPED_TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    else:
        log.warning(
            "pg_trgm is not in this database: searches of 3 characters and more scan every "
            "person. To add the index, a superuser runs: CREATE EXTENSION pg_trgm; %s;",
            TRIGRAM_INDEX,
        )
    # The planner weighs the indexes by the statistics of their expressions: gathered now,
    # not when autovacuum next comes by.
    op.execute("ANALYZE users")


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER identity_links_search_text ON identity_links")
        op.execute("DROP TRIGGER users_search_text ON users")
        op.execute("DROP FUNCTION iam_identity_links_search_text()")
        op.execute("DROP FUNCTION iam_users_search_text()")
        op.execute("DROP INDEX ix_users_search_chars")
        op.execute("DROP INDEX IF EXISTS ix_users_search_trgm")
        if _has_pg_trgm(connection):
            for name, table, expression in DROPPED_TRIGRAM:
                op.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON {table}"
                    f" USING gin ({expression} gin_trgm_ops)"
                )
    op.drop_column("users", "search_text")
