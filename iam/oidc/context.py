"""What one protocol request carries through Authlib's sync hooks: its database session, and
who the end user is (`Principal`), as Authlib's `request.user`."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from iam.db.models import User

_current_db: ContextVar[Session] = ContextVar("iam_current_db")


def db() -> Session:
    """The session of the request being served (set by `Runner`, in the worker thread)."""
    return _current_db.get()


def bind_db(session: Session) -> object:
    return _current_db.set(session)


def unbind_db(token: object) -> None:
    _current_db.reset(token)  # type: ignore[arg-type]


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
