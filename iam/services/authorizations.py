"""Pending authorization requests: saved at /authorize, resumed after each interactive step."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import PendingAuthorization
from iam.errors import NotFoundError
from iam.services.rows import keep_for_browser, kept_for_browser

LIFETIME = timedelta(minutes=30)


def create(
    db: Session, browser_id: str, client_id: str, params: Sequence[tuple[str, str]]
) -> PendingAuthorization:
    """Save a validated request for this browser, in the caller's transaction; expired ones are
    swept on the way."""
    return keep_for_browser(
        db,
        PendingAuthorization,
        secrets.token_urlsafe(24),
        browser_id,
        LIFETIME,
        client_id=client_id,
        params=[list(pair) for pair in params],
    )


def get(db: Session, flow_id: str, browser_id: str) -> PendingAuthorization:
    """The live request `flow_id` of this browser; another browser's looks like none at all."""
    pending = kept_for_browser(db, PendingAuthorization, flow_id, browser_id)
    if pending is None:
        raise NotFoundError("This sign-in request has expired or is not yours.")
    return pending


def finish(db: Session, flow_id: str) -> None:
    """The request was answered: it is deleted, in the caller's transaction."""
    db.execute(delete(PendingAuthorization).where(PendingAuthorization.id == flow_id))


def deny(db: Session, flow_id: str, browser_id: str) -> None:
    """The person cancelled: the request will end with access_denied at the dispatcher."""
    get(db, flow_id, browser_id)  # this browser's, and live
    db.execute(
        update(PendingAuthorization)
        .where(PendingAuthorization.id == flow_id)
        .values(denied_at=utcnow())
    )
