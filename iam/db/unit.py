"""The unit of work of a protocol request: one connection, one transaction, committed when the
request's work returns and rolled back when it raises (`iam.oidc.server.Runner` drives it).

Code that runs inside it (Authlib's hooks, the services they call) reaches it through the
accessors below, in the worker thread that serves the request:

- `current_connection()`: the connection, for the hot path's plain statements
  (`iam.db.fastpath`);
- `current_session()`: an ORM session on the same connection and transaction, opened only when
  first asked for;
- `rollback_current()`: undo what the request wrote so far (it may go on writing).
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from sqlalchemy import Connection
from sqlalchemy.orm import Session


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
