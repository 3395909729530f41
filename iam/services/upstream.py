"""Logins at outside providers: which connector serves a provider, and the `state` round trip
(random, bound to the browser, single use, 10 minutes)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import UpstreamLogin
from iam.db.store import rowcount
from iam.errors import IamError, NotFoundError
from iam.federation.connector import CallbackConnector
from iam.secretbox import digest
from iam.services import audit
from iam.services.rows import keep_for_browser

STATE_LIFETIME = timedelta(minutes=10)
MAX_STATE = 128

#: Opens the connector for one configured instance of a provider (for WeCom: a corp id).
ConnectorOpener = Callable[[str], CallbackConnector]


class LoginStateError(IamError):
    """The callback's `state` is not one this browser was given for this connector, or it was
    used or has expired: a forged, replayed or stale callback."""


class Providers:
    """The provider types, injected by the composition root: a new provider is one entry here,
    and the login pages do not change."""

    def __init__(self, openers: Mapping[str, ConnectorOpener]) -> None:
        self.openers = dict(openers)

    def open(self, provider: str, connector_id: str) -> CallbackConnector:
        opener = self.openers.get(provider)
        if opener is None:
            raise NotFoundError(f"No identity provider {provider!r}.")
        return opener(connector_id)


@dataclass(frozen=True)
class StartedLogin:
    state: str


@dataclass(frozen=True)
class UsedState:
    """What the spent state said: the request the login serves, whom to link to, where to go
    when no request waits (a workbench launch), and whether this was the second, consented
    round that asked for private data."""

    flow_id: str | None
    link_user_id: str | None
    return_to: str | None = None
    private_round: bool = False


def start_login(
    db: Session,
    browser_id: str,
    provider: str,
    connector_id: str,
    flow_id: str | None,
    *,
    link_user_id: str | None = None,
    return_to: str | None = None,
    private_round: bool = False,
) -> StartedLogin:
    """A fresh state for this browser's trip to the provider, in the caller's transaction;
    expired ones are swept. `link_user_id`: a signed-in person asked to link the identity they
    come back with; `return_to`: where to go once signed in when no request waits (set by the
    server, never taken from the browser); `private_round`: this trip asks for private data."""
    state = secrets.token_hex(24)  # WeCom accepts letters and digits only
    keep_for_browser(
        db,
        UpstreamLogin,
        digest(state),
        browser_id,
        STATE_LIFETIME,
        provider=provider,
        connector_id=connector_id,
        flow_id=flow_id or None,
        link_user_id=link_user_id,
        return_to=return_to,
        private_round=private_round,
    )
    return StartedLogin(state)


def use_state(
    db: Session, browser_id: str, provider: str, connector_id: str, state: str
) -> UsedState:
    """Spend the state once, in the caller's transaction; returns what the login was started
    for."""
    if not state or len(state) > MAX_STATE:
        raise LoginStateError("The callback carries no usable state.")
    key = digest(state)
    now = utcnow()
    spent = db.execute(
        update(UpstreamLogin)
        .where(
            UpstreamLogin.id == key,
            UpstreamLogin.browser_hash == digest(browser_id),
            UpstreamLogin.provider == provider,
            UpstreamLogin.connector_id == connector_id,
            UpstreamLogin.used_at.is_(None),
            UpstreamLogin.expires_at > now,
        )
        .values(used_at=now)
    )
    if rowcount(spent) != 1:
        raise LoginStateError("The state is unknown, used, expired or another browser's.")
    row = db.execute(
        select(
            UpstreamLogin.flow_id,
            UpstreamLogin.link_user_id,
            UpstreamLogin.return_to,
            UpstreamLogin.private_round,
        ).where(UpstreamLogin.id == key)
    ).one()
    return UsedState(row.flow_id, row.link_user_id, row.return_to, row.private_round)


def held_state(db: Session, browser_id: str, state: str) -> UsedState | None:
    """What a state this browser was given was for, spent or not, live or not (None for one it
    was not given): after a refused callback, only to lead the person back to the sign-in they
    were on. Nothing is spent."""
    if not state or len(state) > MAX_STATE:
        return None
    row = db.get(UpstreamLogin, digest(state))
    if row is None or not secrets.compare_digest(row.browser_hash, digest(browser_id)):
        return None
    return UsedState(row.flow_id, row.link_user_id, row.return_to, row.private_round)


def record_failure(
    db: Session,
    provider: str,
    connector_id: str,
    reason: str,
    detail: str,
    *,
    ip: str | None = None,
    code: int | str | None = None,
) -> None:
    """An outside login that gave no identity, in the audit trail (and the log, via audit), in
    the caller's transaction."""
    audit.record(
        db.connection(),
        "upstream.login_failed",
        outcome="failure",
        ip=ip,
        provider=provider,
        connector_id=connector_id,
        reason=reason,
        code=code,
        detail=detail[:500],
    )
