"""The engine and the unit of work: `with store() as s: ...; s.commit()`; rollback on exit."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

#: Worker threads that may hold a database connection at once, and the pool's size: a thread
#: never waits for a connection. `UNIT_THREADS` of them run protocol units, each keeping its
#: connection (`iam.oidc.runner`); `iam.app` caps anyio's shared thread pool at the rest. The
#: few extra connections serve short lookups made inside a unit of work (the key ring's, one
#: load at a time).
DB_THREADS = 24
UNIT_THREADS = 8
EXTRA_CONNECTIONS = 4
#: A pooled server connection unused for longer than this is tested before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def create_db_engine(url: str) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    pool = {"pool_size": DB_THREADS, "max_overflow": EXTRA_CONNECTIONS}
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, **pool)
        _ping_when_idle(engine)
        return engine
    database = parsed.database or ""
    if database and database != ":memory:":
        _create_private_file(database)
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


def _create_private_file(database: str) -> None:
    """The SQLite file holds sessions, token digests and the audit trail: only its owner may
    read it. It is made 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    same mode), and an existing file readable by others is narrowed to 0600."""
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use only when it has sat idle: one that the server or a
    firewall dropped meanwhile is replaced, and the request never sees it. (`pool_pre_ping`
    pings on every checkout: one more round trip for every request, on the database too.)
    A connection in steady use needs no test; if the server goes away under it, the error
    invalidates the whole pool, so only the requests in flight then fail."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # the dialect's own, as pool_pre_ping's
        except Exception as error:  # any failure: the pool discards it and connects anew
            raise exc.DisconnectionError(str(error)) from error


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


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE run by `Session.execute` matched. Its result is a
    CursorResult, which counts them, though SQLAlchemy types it as any Result."""
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount
