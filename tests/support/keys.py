"""Signing keys as the tests move them: a key's publication ended (as it is once its last
tokens have expired), straight in the database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from iam.clock import utcnow
from iam.db.models import SigningKey
from iam.db.store import Store


def end_publication(store: Store, kid: str) -> None:
    """The key `kid` leaves the JWKS: its publication ended a second ago."""
    with store() as db:
        db.execute(
            update(SigningKey)
            .where(SigningKey.kid == kid)
            .values(publish_until=utcnow() - timedelta(seconds=1))
        )
        db.commit()
