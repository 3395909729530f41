"""Running a service that works in the caller's transaction, as the use cases do: one unit of
work (committed when it returns, rolled back when it raises, run again on a lost race)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from iam.db.store import Store
from iam.db.unit import in_one_unit
from iam.services import sessions

T = TypeVar("T")


def in_unit(store: Store, service: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`service(db, *args, **kwargs)` in a unit of work of its own."""

    def work(db: Session, _first_try: bool) -> T:
        return service(db, *args, **kwargs)

    return in_one_unit(store, work)


def signed_in(store: Store, cookie_value: str | None) -> sessions.SignedIn | None:
    """The live session behind a cookie, read in a unit of work of its own."""
    return in_unit(store, lambda db: sessions.find_in(db.connection(), cookie_value))
