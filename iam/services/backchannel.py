"""Back-channel logout's queue (OIDC Back-Channel Logout 1.0): who must be told that a session
ended, and what came of telling them.

`enqueue` runs in the unit that ends the session (logout, an admin ending a person's sessions,
a person disabled, `iam db prune` sweeping expired sessions), so the owed logout tokens commit
with the end or not at all. The worker (`iam.oidc.backchannel`) sends them after the commit:
`claim_due` leases a due row by moving its `next_attempt_at` past the send's timeout (a
conditional UPDATE: of two instances claiming one row, only one changes it), then
`record_sent` or `record_failed` says what came of it, each audited. A row whose lease ran out
(its instance died mid-send) is due again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Delete, delete, select, union, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import AccessToken, BackchannelLogout, Client, RefreshToken, SsoSession
from iam.db.store import rowcount
from iam.services import audit

#: How long a claimed row is left to its sender before another may try: past any send.
LEASE = timedelta(seconds=60)
#: The wait after each failed try; a try failing with none left gives up (5 tries, ~30 min).
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=4),
    timedelta(minutes=10),
    timedelta(minutes=15),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
#: Delivered and given-up rows are kept this long (what was sent, for an operator), then pruned.
KEPT_FOR = timedelta(days=7)
#: How many rows one claim takes.
BATCH = 20


@dataclass(frozen=True)
class Delivery:
    """A claimed row: whom to tell, where, about which session, and which try this is."""

    id: str
    client_id: str
    uri: str
    sid: str
    sub: str
    attempt: int


def enqueue(db: Session, sids: Iterable[str], reason: str) -> int:
    """Queue a logout token for each app that has tokens (access or refresh, revoked or not)
    from one of these sessions and a `backchannel_logout_uri`, in the caller's unit; an app
    already queued for a session is not queued twice. How many were queued."""
    wanted = list(dict.fromkeys(sids))
    if not wanted:
        return 0
    now = utcnow()
    pairs = union(
        *(
            select(table.sid, table.client_id, table.user_id).where(
                table.sid.in_(wanted), table.user_id.is_not(None)
            )
            for table in (AccessToken, RefreshToken)
        )
    ).subquery()
    found = db.execute(
        select(pairs.c.sid, pairs.c.client_id, pairs.c.user_id)
        .join(Client, Client.client_id == pairs.c.client_id)
        .where(Client.backchannel_logout_uri.is_not(None))
        .order_by(pairs.c.sid, pairs.c.client_id)
    ).all()
    queued = {
        (sid, client_id)
        for sid, client_id in db.execute(
            select(BackchannelLogout.sid, BackchannelLogout.client_id).where(
                BackchannelLogout.sid.in_(wanted)
            )
        )
    }
    count = 0
    for sid, client_id, user_id in found:
        if (sid, client_id) in queued or user_id is None:
            continue
        queued.add((sid, client_id))
        db.add(
            BackchannelLogout(
                client_id=client_id,
                sid=sid,
                user_id=user_id,
                reason=reason[:64],
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        count += 1
    db.flush()
    return count


def enqueue_expired(db: Session, now: datetime | None = None) -> int:
    """Queue the logout tokens owed for the sessions that have expired (before `iam db prune`
    deletes them), in the caller's unit."""
    expired = db.scalars(
        select(SsoSession.id).where(SsoSession.expires_at <= (now or utcnow()))
    ).all()
    return enqueue(db, expired, "expired")


def claim_due(db: Session, now: datetime | None = None, *, limit: int = BATCH) -> list[Delivery]:
    """Lease the due rows (at most `limit`) to the caller, in the caller's unit: each one's
    `next_attempt_at` moves `LEASE` ahead and its try is counted. A row another instance
    claimed meanwhile is left to it."""
    now = now or utcnow()
    due = db.execute(
        select(BackchannelLogout.id, Client.backchannel_logout_uri)
        .join(Client, Client.client_id == BackchannelLogout.client_id)
        .where(BackchannelLogout.status == "pending", BackchannelLogout.next_attempt_at <= now)
        .order_by(BackchannelLogout.next_attempt_at, BackchannelLogout.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=BackchannelLogout)
    ).all()
    claimed = []
    for row_id, uri in due:
        taken = rowcount(
            db.execute(
                update(BackchannelLogout)
                .where(
                    BackchannelLogout.id == row_id,
                    BackchannelLogout.status == "pending",
                    BackchannelLogout.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + LEASE, attempts=BackchannelLogout.attempts + 1)
                .execution_options(synchronize_session=False)
            )
        )
        row = db.get(BackchannelLogout, row_id) if taken else None
        if row is None:
            continue
        db.refresh(row)
        if not uri:  # the app stopped wanting them meanwhile
            row.status = "given_up"
            row.finished_at = now
            row.last_error = "the app has no backchannel_logout_uri any more"
            continue
        claimed.append(Delivery(row.id, row.client_id, uri, row.sid, row.user_id, row.attempts))
    return claimed


def record_sent(db: Session, delivery: Delivery, now: datetime | None = None) -> None:
    """The app took the logout token: done, audited, in the caller's unit."""
    row = db.get(BackchannelLogout, delivery.id)
    if row is None or row.status != "pending":
        return
    row.status = "sent"
    row.finished_at = now or utcnow()
    row.last_error = None
    audit.record(
        db.connection(),
        "logout.backchannel_sent",
        user_id=delivery.sub,
        client_id=delivery.client_id,
        sid=delivery.sid,
        attempt=delivery.attempt,
    )


def record_failed(db: Session, delivery: Delivery, error: str, now: datetime | None = None) -> bool:
    """A try failed: due again after its delay, or given up after the last try; audited, in
    the caller's unit. True when it was given up."""
    now = now or utcnow()
    row = db.get(BackchannelLogout, delivery.id)
    if row is None or row.status != "pending":
        return False
    row.last_error = error[:500]
    gave_up = delivery.attempt >= MAX_ATTEMPTS
    detail: dict[str, Any] = {
        "sid": delivery.sid,
        "attempt": delivery.attempt,
        "error": error[:500],
    }
    audit.record(
        db.connection(),
        "logout.backchannel_failed",
        outcome="failure",
        user_id=delivery.sub,
        client_id=delivery.client_id,
        **detail,
    )
    if gave_up:
        row.status = "given_up"
        row.finished_at = now
        audit.record(
            db.connection(),
            "logout.backchannel_given_up",
            outcome="failure",
            user_id=delivery.sub,
            client_id=delivery.client_id,
            **detail,
        )
    else:
        row.next_attempt_at = now + RETRY_DELAYS[delivery.attempt - 1]
    return gave_up


def finished_before(now: datetime) -> Delete:
    """The rows `iam db prune` deletes: delivered or given up more than `KEPT_FOR` ago."""
    return delete(BackchannelLogout).where(
        BackchannelLogout.status.in_(("sent", "given_up")),
        BackchannelLogout.finished_at <= now - KEPT_FOR,
    )
