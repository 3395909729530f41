"""Reading and keeping rows, the way every service does it.

- `found`: one row by its key, or `NotFoundError` in the words an admin or a caller reads
  ("No client 'c_1'.").
- `keep_for_browser` and `kept_for_browser`: the short-lived rows one browser leaves on its way
  through a sign-in (a waiting authorization request, an identity waiting to be bound, a trip
  to WeCom). Each belongs to the browser that made it (the digest of its id is kept, and
  another browser's row looks like none at all) and lives a few minutes; making one sweeps the
  expired rows of its kind.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import PendingAuthorization, PendingBinding, UpstreamLogin
from iam.errors import NotFoundError
from iam.secretbox import digest

M = TypeVar("M")
#: The rows a browser holds for a while.
Held = TypeVar("Held", PendingAuthorization, PendingBinding, UpstreamLogin)


def found(db: Session, model: type[M], key: Any, noun: str) -> M:
    row = db.get(model, key)
    if row is None:
        raise NotFoundError(f"No {noun} {key!r}.")
    return row


def keep_for_browser(
    db: Session,
    model: type[Held],
    row_id: str,
    browser_id: str,
    lifetime: timedelta,
    **fields: Any,
) -> Held:
    """A new row of `model` under `row_id` for this browser, live for `lifetime`, in the
    caller's transaction; the expired rows of its kind are swept on the way."""
    now = utcnow()
    db.execute(delete(model).where(model.expires_at <= now))
    row = model(
        id=row_id,
        browser_hash=digest(browser_id),
        created_at=now,
        expires_at=now + lifetime,
        **fields,
    )
    db.add(row)
    return row


def kept_for_browser(db: Session, model: type[Held], row_id: str, browser_id: str) -> Held | None:
    """The live row `row_id` of this browser; None for an unknown, expired or another
    browser's row (they look alike)."""
    row = db.get(model, row_id) if row_id else None
    if (
        row is None
        or row.expires_at <= utcnow()
        or not secrets.compare_digest(row.browser_hash, digest(browser_id))
    ):
        return None
    return row
