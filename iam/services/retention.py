"""Pruning what can no longer be used: expired codes, tokens, sessions and one-time codes.

Every issued code and token leaves a row (revocation and replay detection need them while
they live), so without pruning the tables, and the indexes every sign-in walks, only grow.
`iam db prune` runs this from a timer or a Kubernetes CronJob, one table per unit of work.

Kept on purpose: a used authorization code stays while any token of its family is alive, so a
replayed code still revokes them (RFC 6749 4.1.2); one-time codes stay a day, the window of
the daily SMS limit that counts them. The audit trail is never pruned here: it is append-only
(the database refuses DELETE on it) and its retention is the operator's policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Delete, Exists, delete, exists, select
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import (
    AccessToken,
    AdminSession,
    AuthorizationCode,
    Client,
    OtpChallenge,
    PendingAuthorization,
    PendingBinding,
    RefreshToken,
    SsoSession,
    UpstreamLogin,
)
from iam.db.store import rowcount
from iam.services import backchannel

log = logging.getLogger("iam.retention")

#: One-time codes are counted by the daily sending limit for this long after they were sent.
OTP_KEPT_FOR = timedelta(days=1)
#: Pruning these loses what says which apps an expired session gave tokens to: the logout
#: tokens owed for expired sessions are queued first (back-channel logout).
SESSION_TOKEN_TABLES = ("access_tokens", "refresh_tokens", "sso_sessions")


def _live_family_token(model: type[AccessToken] | type[RefreshToken], now: datetime) -> Exists:
    """A token of the code's family that could still be used."""
    alive = [
        model.family_id == AuthorizationCode.id,
        model.expires_at > now,
        model.revoked_at.is_(None),
    ]
    if model is RefreshToken:
        alive.append(RefreshToken.rotated_at.is_(None))
    return exists(select(model.family_id).where(*alive))


def _owed_a_logout(now: datetime) -> ColumnElement[bool]:
    """An access token of a live session to an app told of logouts: it is what says that app
    is owed a logout token when the session expires (back-channel logout), so it stays until
    the session has ended."""
    return exists(
        select(SsoSession.id).where(SsoSession.id == AccessToken.sid, SsoSession.expires_at > now)
    ) & exists(
        select(Client.client_id).where(
            Client.client_id == AccessToken.client_id, Client.backchannel_logout_uri.is_not(None)
        )
    )


def _statements(now: datetime) -> dict[str, Delete]:
    """What each table loses, by table name (in the order they are pruned)."""
    return {
        "authorization_codes": delete(AuthorizationCode).where(
            AuthorizationCode.expires_at <= now,
            ~_live_family_token(RefreshToken, now),
            ~_live_family_token(AccessToken, now),
        ),
        "access_tokens": delete(AccessToken).where(
            AccessToken.expires_at <= now, ~_owed_a_logout(now)
        ),
        "refresh_tokens": delete(RefreshToken).where(RefreshToken.expires_at <= now),
        "sso_sessions": delete(SsoSession).where(SsoSession.expires_at <= now),
        "otp_challenges": delete(OtpChallenge).where(
            OtpChallenge.created_at <= now - OTP_KEPT_FOR, OtpChallenge.expires_at <= now
        ),
        "pending_authorizations": delete(PendingAuthorization).where(
            PendingAuthorization.expires_at <= now
        ),
        "upstream_logins": delete(UpstreamLogin).where(UpstreamLogin.expires_at <= now),
        "pending_bindings": delete(PendingBinding).where(PendingBinding.expires_at <= now),
        "admin_sessions": delete(AdminSession).where(AdminSession.expires_at <= now),
        "backchannel_logouts": backchannel.finished_before(now),
    }


#: The tables pruned, in the order they are pruned (the keys of `_statements`).
TABLES = (
    "authorization_codes",
    "access_tokens",
    "refresh_tokens",
    "sso_sessions",
    "otp_challenges",
    "pending_authorizations",
    "upstream_logins",
    "pending_bindings",
    "admin_sessions",
    "backchannel_logouts",
)


def prune(
    db: Session, now: datetime | None = None, *, tables: Iterable[str] = TABLES
) -> dict[str, int]:
    """Delete what has expired from `tables` (all by default), in the caller's transaction; the
    number of rows deleted, by table. `iam db prune` gives each table a unit of work of its
    own, so no lock is held across the whole run and an interrupted run keeps its progress."""
    now = now or utcnow()
    statements = _statements(now)
    deleted: dict[str, int] = {}
    for table in tables:
        if table in SESSION_TOKEN_TABLES:  # before the rows that say whom to tell go
            backchannel.enqueue_expired(db, now)
        statement = statements[table].execution_options(synchronize_session=False)
        deleted[table] = rowcount(db.execute(statement))
    return deleted


def log_pruned(deleted: Mapping[str, int]) -> None:
    log.info("pruned %s", ", ".join(f"{table}={count}" for table, count in deleted.items()))
