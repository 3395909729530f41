"""What comes next in an authorization request: a pure function, tested by table.

Every interactive step returns to the dispatcher, which asks `next_step` and does what it says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Login:
    """Show the login page, then come back."""


@dataclass(frozen=True)
class Issue:
    """Issue the authorization code to the client."""


@dataclass(frozen=True)
class Fail:
    """Return an OIDC error to the client (OIDC Core 3.1.2.6)."""

    error: str


Step = Login | Issue | Fail


@dataclass(frozen=True)
class Situation:
    """Everything the decision depends on, as plain values."""

    prompt: frozenset[str]
    max_age: int | None
    signed_in_at: datetime | None  # auth_time of the browser's session; None: no session
    logged_in_during_request: bool  # the person signed in after this request started
    now: datetime


def next_step(situation: Situation) -> Step:
    signed_in = situation.signed_in_at is not None
    too_old = (
        situation.max_age is not None
        and situation.signed_in_at is not None
        and situation.now - situation.signed_in_at > timedelta(seconds=situation.max_age)
    )
    fresh = situation.logged_in_during_request
    if "none" in situation.prompt:
        return Fail("login_required") if not signed_in or too_old else Issue()
    if not signed_in:
        return Login()
    if "login" in situation.prompt and not fresh:
        return Login()
    if too_old and not fresh:
        return Login()
    return Issue()
