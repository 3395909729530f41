"""The engine and the unit of work: `with store() as s: ...; s.commit()`; rollback on exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

#: Worker threads that may hold a database connection at once (`iam.app` caps its thread pool
#: at this), and the pool's size: a thread never waits for a connection. The few extra ones
#: serve short lookups made inside a unit of work (the key ring's, one load at a time).
DB_THREADS = 24
EXTRA_CONNECTIONS = 4


def create_db_engine(url: str) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    pool = {"pool_size": DB_THREADS, "max_overflow": EXTRA_CONNECTIONS}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    database = parsed.database or ""
    if database and database != ":memory:":
        from pathlib import Path

        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
    else:  # one shared in-memory database for every thread
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Under WAL, NORMAL syncs at checkpoints, not at every commit; still never corrupt.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


class Store:
    """Opens sessions on one engine. Services own their transactions; objects stay usable
    after commit (`expire_on_commit=False`) because they travel back to the async edge."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        """A session; whatever was not committed is rolled back when it closes. (`close`, not
        `rollback`: loaded objects stay readable, detached, for the caller.)"""
        with self._sessions() as session:
            yield session
