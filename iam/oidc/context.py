"""What one protocol request carries through Authlib's sync hooks: its unit of work (one
database transaction), and who the end user is (`Principal`), as Authlib's `request.user`."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from iam.db.models import User


class UnitOfWork:
    """One request's transaction on one connection. The hot path's hooks run plain statements
    on the connection; an ORM session is opened on the same connection and transaction only
    when a hook asks for one (`db()`): building and committing a session costs more than many
    of those requests' statements."""

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


def db() -> Session:
    """The ORM session of the request being served (set up by `Runner`, in the worker)."""
    return _current.get().session


def connection() -> Connection:
    """The connection of the request being served, for plain statements (no ORM session)."""
    return _current.get().connection


def rollback() -> None:
    """Undo what the request being served has written so far (it may go on writing)."""
    _current.get().rollback()


def bind(unit: UnitOfWork) -> Token[UnitOfWork]:
    return _current.set(unit)


def unbind(token: Token[UnitOfWork]) -> None:
    _current.reset(token)


@dataclass(frozen=True)
class Principal:
    """The signed-in person as tokens describe them: the user, how and when they signed in,
    in which SSO session, and the token family (the code) their tokens descend from."""

    user: User
    auth_time: datetime
    amr: tuple[str, ...]
    sid: str | None = None
    context_link_id: str | None = None
    family_id: str | None = None

    def get_user_id(self) -> str:
        return self.user.id
