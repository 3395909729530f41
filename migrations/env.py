"""Alembic environment: runs on the connection handed in by iam.db.migrate, or on IAM_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from iam.db import models  # noqa: F401  (registers the tables)
from iam.db.base import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from iam import settings as iam_settings
    from iam.db.store import create_db_engine

    engine = create_db_engine(iam_settings.load().database_url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
