"""The audit trail: one append-only row per security-relevant event, in the caller's transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from iam.db.fastpath import INSERT_AUDIT_EVENT
from iam.db.models import AuditEvent
from iam.errors import ValidationError

log = logging.getLogger("iam.audit")


def record(
    connection: Connection,
    event: str,
    *,
    outcome: str = "success",
    user_id: str | None = None,
    client_id: str | None = None,
    actor: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Write an event in the transaction of `connection` (a use case's ORM session gives its
    own: `db.connection()`): with the change it describes, or not at all. (A plain INSERT, not
    an ORM object: the trail is append-only and this is on the hot path, which has no session;
    it flushes nothing, so the caller's own errors surface where the caller expects them.)"""
    connection.execute(
        INSERT_AUDIT_EVENT,
        {
            "event": event,
            "outcome": outcome,
            "user_id": user_id,
            "client_id": client_id,
            "actor": actor,
            "ip": ip,
            "detail": detail,
        },
    )
    log.info("%s %s user=%s client=%s", event, outcome, user_id, client_id)


#: A page of the trail holds at most this many events.
MAX_PAGE = 200
#: The largest id a cursor may name (a signed 64-bit integer, PostgreSQL's BIGINT).
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class AuditPage:
    """Events newest first, and the cursor of the next (older) page: None on the last one."""

    events: list[AuditEvent]
    next_before: int | None


def search(
    db: Session,
    *,
    user_id: str | None = None,
    client_id: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    before: int | None = None,
) -> AuditPage:
    """Events newest first (by id, which only grows), paged by keyset: the next page is the
    events with an id below `next_before`, so paging stays exact while new events arrive.

    `event` is an exact name, or a prefix ending in a dot (`login.`). `since` is inclusive,
    `until` exclusive (naive UTC). The order is the primary key's and every filter has an index
    (`client_id` with the id, for its pages in order), so a page is `limit + 1` rows from an
    index scan, never a sort of the whole trail."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("limit", f"limit must be between 1 and {MAX_PAGE}.")
    if before is not None and not 1 <= before <= MAX_ID:
        raise ValidationError("before", "before must be an event id from a previous page.")
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    for value, column in ((user_id, AuditEvent.user_id), (client_id, AuditEvent.client_id)):
        if value is not None:
            if "\x00" in value:  # matches nothing, and PostgreSQL refuses NUL in text
                return AuditPage([], None)
            statement = statement.where(column == value)
    if event is not None:
        if "\x00" in event:
            return AuditPage([], None)
        if event.endswith("."):
            # LIKE 'login.%' (escaped): a prefix, whatever the collation; an index range scan
            # where the collation allows one (C, or a pattern_ops index).
            statement = statement.where(AuditEvent.event.startswith(event, autoescape=True))
        else:
            statement = statement.where(AuditEvent.event == event)
    if since is not None:
        statement = statement.where(AuditEvent.occurred_at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.occurred_at < until)
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    events = list(db.scalars(statement))
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(events, events[-1].id if more else None)
