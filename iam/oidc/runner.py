"""Where a protocol request's unit of work runs, and on which connection.

A protocol unit (Authlib's synchronous work for one request, `iam.db.unit.UnitOfWork`) runs
in one of three places, chosen per request by `Runner`:

- **on the event loop**, for a local database: SQLite in one process with nothing shared over
  the network (no Redis). A unit is then a few statements on a local file, tens of microseconds
  each, and under load the hand-off to a thread and back cost more CPU than the work (issue
  #17: server CPU per flow 6.35 -> 4.34 ms, userinfo 0.75 -> 0.60, flow p99 351 -> 150 ms at
  concurrency 16). Those units run one at a time, so they take turns on one connection kept
  for the loop: checking one out of the pool and back for each request cost about 85 us, a
  sixth of a userinfo.
- **on one of the runner's unit threads**, otherwise (PostgreSQL, Redis, SQLite with several
  workers, whose write lock one worker may wait for): `UNIT_THREADS` threads of their own,
  each keeping its connection between units. Against a pool checkout and anyio's thread pool
  for each request this saved 0.45 ms of the 5.2 of a flow on PostgreSQL (issue #17). A kept
  connection idle for longer than `PING_AFTER_IDLE_SECONDS` is pinged before use, as the pool
  pings one (`iam.db.store`): one the server or a firewall dropped is replaced, and the
  request never sees it.
- **in a thread of the app's shared pool** (anyio's, sized to the database pool), with a
  connection checked out for it, for a request that may wait on the network beyond the
  database: a client assertion, whose keys may be at a jwks_uri. It must not hold a unit
  thread, or a slow jwks_uri would hold up everyone's sign-in.

Whatever the place, a unit commits whole or not at all, and the connection is clean for the
next one.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from iam.db.store import PING_AFTER_IDLE_SECONDS, UNIT_THREADS, Store
from iam.db.unit import UnitOfWork, bind, unbind

T = TypeVar("T")


class Runner:
    """Runs a sync unit of work inside one transaction, committed when it returns and rolled
    back when it raises, where the module docstring says."""

    def __init__(self, store: Store, *, local_database: bool = False) -> None:
        self.store = store
        self.local_database = local_database
        self._loop_connection: Connection | None = None
        self._unit_threads: ThreadPoolExecutor | None = None  # made on first use
        self._kept = threading.local()  # a unit thread's connection and when it was last used
        self._kept_connections: list[Connection] = []
        self._lock = threading.Lock()

    async def __call__(self, fn: Callable[..., T], *args: Any, local: bool = True) -> T:
        """`fn(*args)` as one unit. `local=False`: the work may wait on the network beyond
        the database (a shared pool thread, not the loop nor a unit thread)."""
        if not local:
            return await anyio.to_thread.run_sync(self._in_pool_thread, fn, args)
        if self.local_database:
            return self._on_loop(fn, args)
        context = contextvars.copy_context()  # the request's log context, as anyio's threads
        return await asyncio.wrap_future(
            self._threads().submit(context.run, self._on_unit_thread, fn, args)
        )

    def _on_loop(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        connection = self._loop_connection
        if connection is None or connection.closed:
            connection = self._loop_connection = self.store.engine.connect()
        return _in_unit(connection, fn, args)

    def _threads(self) -> ThreadPoolExecutor:
        if self._unit_threads is None:
            self._unit_threads = ThreadPoolExecutor(UNIT_THREADS, thread_name_prefix="iam-unit")
        return self._unit_threads

    def _on_unit_thread(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return _in_unit(self._kept_connection(), fn, args)

    def _kept_connection(self) -> Connection:
        """This unit thread's connection: made on its first unit, pinged after an idle spell
        (SQLAlchemy connects anew on next use if the ping fails)."""
        kept = self._kept
        connection: Connection | None = getattr(kept, "connection", None)
        now = time.monotonic()
        if connection is None or connection.closed:
            connection = kept.connection = self.store.engine.connect()
            with self._lock:
                self._kept_connections.append(connection)
        elif now - kept.used_at > PING_AFTER_IDLE_SECONDS and not _answers(connection):
            connection.invalidate()
        kept.used_at = now
        return connection

    def _in_pool_thread(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.store.engine.connect() as connection:
            return _in_unit(connection, fn, args)

    def close(self) -> None:
        """Stop the unit threads and give every kept connection back (the app's shutdown)."""
        if self._unit_threads is not None:
            self._unit_threads.shutdown(wait=True)
            self._unit_threads = None
        with self._lock:
            kept, self._kept_connections = self._kept_connections, []
        if self._loop_connection is not None:
            kept.append(self._loop_connection)
            self._loop_connection = None
        for connection in kept:
            connection.close()


def _answers(connection: Connection) -> bool:
    """Whether the database still answers on this connection (the dialect's own ping)."""
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:
        return False
    try:
        connection.dialect.do_ping(dbapi_connection)
        dbapi_connection.rollback()  # the ping's own transaction (psycopg begins one)
    except Exception:  # any failure means no
        return False
    return True


def _in_unit(connection: Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """`fn(*args)` as one unit of work on `connection`: committed when it returns, rolled back
    when it raises (the connection may serve the next unit at once)."""
    unit = UnitOfWork(connection)
    token = bind(unit)
    try:
        result = fn(*args)
        unit.commit()
        return result
    except BaseException:
        unit.rollback()
        raise
    finally:
        unbind(token)
        unit.close()
