"""The audit trail: one append-only row per security-relevant event, in the caller's transaction."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from iam.db.models import AuditEvent

log = logging.getLogger("iam.audit")


def record(
    session: Session,
    event: str,
    *,
    outcome: str = "success",
    user_id: str | None = None,
    client_id: str | None = None,
    actor: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Add an event to `session`; it is written with the change it describes, or not at all."""
    session.add(
        AuditEvent(
            event=event,
            outcome=outcome,
            user_id=user_id,
            client_id=client_id,
            actor=actor,
            ip=ip,
            detail=detail,
        )
    )
    log.info("%s %s user=%s client=%s", event, outcome, user_id, client_id)
