"""Pruning what can no longer be used: expired codes, tokens, sessions and one-time codes.

Every issued code and token leaves a row (revocation and replay detection need them while
they live), so without pruning the tables, and the indexes every sign-in walks, only grow.
`iam db prune` runs this from a timer or a Kubernetes CronJob.

Kept on purpose: a used authorization code stays while any token of its family is alive, so a
replayed code still revokes them (RFC 6749 4.1.2); one-time codes stay a day, the window of
the daily SMS limit that counts them. The audit trail is never pruned here: it is append-only
(the database refuses DELETE on it) and its retention is the operator's policy.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Delete, Exists, delete, exists, select

from iam.clock import utcnow
from iam.db.models import (
    AccessToken,
    AdminSession,
    AuthorizationCode,
    OtpChallenge,
    PendingAuthorization,
    PendingBinding,
    RefreshToken,
    SsoSession,
    UpstreamLogin,
)
from iam.db.store import Store, rowcount

log = logging.getLogger("iam.retention")

#: One-time codes are counted by the daily sending limit for this long after they were sent.
OTP_KEPT_FOR = timedelta(days=1)


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


def _statements(now: datetime) -> dict[str, Delete]:
    """What each table loses, by table name (in the order they are pruned)."""
    return {
        "authorization_codes": delete(AuthorizationCode).where(
            AuthorizationCode.expires_at <= now,
            ~_live_family_token(RefreshToken, now),
            ~_live_family_token(AccessToken, now),
        ),
        "access_tokens": delete(AccessToken).where(AccessToken.expires_at <= now),
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
    }


def prune(store: Store, now: datetime | None = None) -> dict[str, int]:
    """Delete what has expired; the number of rows deleted, by table. One transaction per
    table, so no lock is held across the whole run and an interrupted run keeps its progress."""
    now = now or utcnow()
    deleted: dict[str, int] = {}
    for table, statement in _statements(now).items():
        with store() as session:
            result = session.execute(statement.execution_options(synchronize_session=False))
            session.commit()
        deleted[table] = rowcount(result)
    log.info("pruned %s", ", ".join(f"{table}={count}" for table, count in deleted.items()))
    return deleted
