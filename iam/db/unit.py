"""Units of work: a use case commits whole or not at all.

`in_one_unit` runs a use case of the pages (sign in, bind, ...) on an ORM session, committed
when it returns and rolled back when it raises; the services it calls take that session and
never open a transaction of their own.

`UnitOfWork` is the unit of a protocol request: one connection, one transaction, committed
when the request's work returns and rolled back when it raises (`iam.oidc.runner.Runner`
drives it).

Code that runs inside it (Authlib's hooks, the services they call) reaches it through the
accessors below, in the worker thread that serves the request:

- `current_connection()`: the connection, for the hot path's plain statements
  (`iam.db.fastpath`);
- `current_session()`: an ORM session on the same connection and transaction, opened only when
  first asked for;
- `rollback_current()`: undo what the request wrote so far (it may go on writing).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iam.db.store import Store
from iam.errors import ConflictError

T = TypeVar("T")
#: How often a use case runs again after losing a race to a concurrent one (see `in_one_unit`).
ATTEMPTS = 3


def in_one_unit(store: Store, work: Callable[[Session, bool], T]) -> T:
    """Run `work(db, first_try)` as one unit of work: one transaction, committed when it
    returns, rolled back when it raises. When a concurrent use case commits the same row first
    (two first logins of one member make one person and one link), the database refuses this
    one's insert and the unit runs again from the start: it then finds what the other made.
    `first_try` lets the work count a rate limit only once."""
    for attempt in range(ATTEMPTS):
        with store() as db:
            try:
                result = work(db, attempt == 0)
                db.commit()
            except IntegrityError:
                continue
            return result
    raise ConflictError("A concurrent change got in the way; try again.")


#: A use case's work on the unit's session (what `one_unit` and `in_worker` run).
Work = Callable[[Session], T]


def one_unit(store: Store, work: Work[T]) -> T:
    """`work(db)` as one unit of work (`in_one_unit`), for a use case that counts nothing: an
    admin action, a CLI command."""
    return in_one_unit(store, lambda db, _first_try: work(db))


async def in_worker(store: Store, work: Work[T]) -> T:
    """`one_unit(store, work)` in a worker thread, from an async handler: the handler reads the
    request, then its whole use case runs in one worker call and one transaction."""
    return await anyio.to_thread.run_sync(one_unit, store, work)


class UnitOfWork:
    """One request's transaction on one connection. The hot path's hooks run plain statements
    on the connection; an ORM session is opened on the same connection and transaction only
    when a hook asks for one (`current_session()`): building and committing a session costs
    more than many of those requests' statements."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            # "control_fully": its commit and rollback are the request's transaction's.
            self._session = Session(
                bind=self.connection, join_transaction_mode="control_fully", expire_on_commit=False
            )
        return self._session

    def commit(self) -> None:
        if self._session is not None:
            self._session.commit()
        if self.connection.in_transaction():
            self.connection.commit()

    def rollback(self) -> None:
        if self._session is not None:
            self._session.rollback()
        if self.connection.in_transaction():
            self.connection.rollback()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


_current: ContextVar[UnitOfWork] = ContextVar("iam_unit_of_work")


def current_session() -> Session:
    """The ORM session of the unit of work being served (opened on first use)."""
    return _current.get().session


def current_connection() -> Connection:
    """The connection of the unit of work being served, for plain statements (no ORM)."""
    return _current.get().connection


def rollback_current() -> None:
    """Undo what the unit of work being served has written so far (it may go on writing)."""
    _current.get().rollback()


def bind(unit: UnitOfWork) -> Token[UnitOfWork]:
    """Make `unit` the one the accessors give, in this thread's context."""
    return _current.set(unit)


def unbind(token: Token[UnitOfWork]) -> None:
    _current.reset(token)
