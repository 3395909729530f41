"""Server-side SSO sessions: started at login with a fresh id, found by cookie, ended at logout."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db import fastpath
from iam.db.fastpath import SessionRecord, UserView
from iam.db.models import AccessToken, IdentityLink, RefreshToken, SsoSession, User, new_id
from iam.errors import ForbiddenError
from iam.secretbox import digest
from iam.services import audit, backchannel

SESSION_LIFETIME = timedelta(hours=12)
#: Only write `last_seen_at` this often, not on every request.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class SignedIn:
    """A live session (read for this request) and its user (a shared frozen view)."""

    session: SessionRecord
    user: UserView


@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    session: SsoSession


def start(
    db: Session,
    user: User,
    amr: list[str],
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    context_link_id: str | None = None,
) -> NewSession:
    """A new session in the caller's transaction; the cookie value is returned, never stored."""
    now = utcnow()
    cookie_value = secrets.token_urlsafe(32)
    sso = SsoSession(
        id=new_id(),  # the sid, known before the flush so the audit event can name it
        token_hash=digest(cookie_value),
        user_id=user.id,
        amr=list(amr),
        auth_time=now,
        context_link_id=context_link_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_LIFETIME,
        ip=ip,
        user_agent=(user_agent or "")[:500] or None,
    )
    db.add(sso)
    audit.record(db.connection(), "session.started", user_id=user.id, ip=ip, sid=sso.id, amr=amr)
    return NewSession(cookie_value, sso)


def renew(
    db: Session,
    sso: SessionRecord | SsoSession,
    amr: list[str],
    *,
    ip: str | None = None,
    context_link_id: str | None = None,
) -> NewSession:
    """The same person signed in again: same `sid` (their tokens stay valid), but a new cookie
    secret, a new auth_time and the context of this login (none for a phone login), so a planted
    or stolen cookie dies at login."""
    now = utcnow()
    cookie_value = secrets.token_urlsafe(32)
    row = db.get(SsoSession, sso.id)
    if row is None:
        raise LookupError("the session ended meanwhile")
    row.token_hash = digest(cookie_value)
    row.auth_time = now
    row.amr = list(amr)
    row.context_link_id = context_link_id
    row.last_seen_at = now
    row.expires_at = now + SESSION_LIFETIME
    audit.record(
        db.connection(), "session.renewed", user_id=row.user_id, ip=ip, sid=row.id, amr=amr
    )
    return NewSession(cookie_value, row)


def find_in(connection: Connection, cookie_value: str | None) -> SignedIn | None:
    """The live session behind a cookie, or None (unknown, expired, or user disabled), in the
    caller's transaction (which commits the `last_seen_at` touch)."""
    if not cookie_value or len(cookie_value) > 200:
        return None
    now = utcnow()
    # Every authorization reads it: the hot path's statements (`iam.db.fastpath`).
    found = fastpath.session_and_user(connection, digest(cookie_value))
    if found is None:
        return None
    sso, user = found
    if sso.expires_at <= now or not user.is_active:
        return None
    if now - sso.last_seen_at > TOUCH_EVERY:
        fastpath.change(connection, fastpath.TOUCH_SESSION, {"sid": sso.id, "now": now})
        sso = replace(sso, last_seen_at=now)
    return SignedIn(sso, user)


#: The scope that asks for refresh tokens that outlive the session (OIDC Core 11).
OFFLINE_ACCESS = "offline_access"


def end(db: Session, sid: str, *, ip: str | None = None, reason: str = "logout") -> None:
    """End a session and revoke the tokens bound to it (its access tokens, and its refresh
    tokens but those granted `offline_access`, which outlive it), in the caller's transaction;
    the apps it gave tokens to that asked to be told get a logout token (`backchannel`),
    queued in the same transaction."""
    now = utcnow()
    user_id = db.scalar(select(SsoSession.user_id).where(SsoSession.id == sid))
    if user_id is not None:
        backchannel.enqueue(db, [sid], reason)
    db.execute(delete(SsoSession).where(SsoSession.id == sid))
    db.execute(
        update(AccessToken)
        .where(AccessToken.sid == sid, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    db.execute(  # refresh tokens granted `offline_access` outlive the session (OIDC Core 11)
        update(RefreshToken)
        .where(
            RefreshToken.sid == sid,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.scope.not_like(f"%{OFFLINE_ACCESS}%"),
        )
        .values(revoked_at=now)
    )
    if user_id is not None:
        audit.record(
            db.connection(), "session.ended", user_id=user_id, ip=ip, sid=sid, reason=reason
        )


def choose_context(db: Session, sid: str, link_id: str, *, ip: str | None = None) -> None:
    """The person picked one of their identities for this session (the selector), in the
    caller's transaction. Only an active link of the session's own user is accepted
    (`ForbiddenError` otherwise)."""
    now = utcnow()
    sso = db.get(SsoSession, sid)
    link = db.get(IdentityLink, link_id) if link_id and len(link_id) <= 36 else None
    if (
        sso is None
        or sso.expires_at <= now
        or link is None
        or link.user_id != sso.user_id
        or link.status != "active"
    ):
        raise ForbiddenError("That identity is not one of yours.")
    sso.context_link_id = link.id
    sso.context_set_at = now
    audit.record(
        db.connection(),
        "session.context_chosen",
        user_id=sso.user_id,
        ip=ip,
        sid=sid,
        link_id=link.id,
    )
