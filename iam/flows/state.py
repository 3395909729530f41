"""What comes next in an authorization request: a pure function, tested by table.

Every interactive step returns to the dispatcher, which asks `next_step` and does what it says.
It decides sign-in (prompt, max_age) first, then the identity context the app's policy needs:
the SSO pre-flight check of product.md (flows 3 and 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

POLICIES = ("none", "optional", "required")


@dataclass(frozen=True)
class Login:
    """Show the login page, then come back."""


@dataclass(frozen=True)
class Select:
    """Show the identity selector, then come back."""


@dataclass(frozen=True)
class OfferLinking:
    """The app needs an identity context and the person has none: offer to link one."""


@dataclass(frozen=True)
class Issue:
    """Issue the authorization code, with this identity context (a link id) or none."""

    context_link_id: str | None = None


@dataclass(frozen=True)
class Fail:
    """Return an OIDC error to the client (OIDC Core 3.1.2.6)."""

    error: str


Step = Login | Select | OfferLinking | Issue | Fail


@dataclass(frozen=True)
class Situation:
    """Everything the decision depends on, as plain values."""

    prompt: frozenset[str]
    max_age: int | None
    signed_in_at: datetime | None  # auth_time of the browser's session; None: no session
    logged_in_during_request: bool  # the person signed in after this request started
    now: datetime
    policy: str = "none"  # the client's context policy
    session_context: str | None = None  # the session's context link, if still an active link
    active_links: tuple[str, ...] = ()  # the user's active links (ids), oldest first
    chose_during_request: bool = False  # the context was set after this request started
    denied: bool = False  # the person cancelled at the selector or the linking offer
    hint_names_another: bool = False  # id_token_hint names someone other than the session's


def next_step(situation: Situation) -> Step:
    signed_in = _sign_in_step(situation)
    if signed_in is not None:
        return signed_in
    return _context_step(situation)


def _sign_in_step(situation: Situation) -> Step | None:
    """Login or `login_required` when the session cannot serve this request; None when it can."""
    signed_in = situation.signed_in_at is not None
    too_old = (
        situation.max_age is not None
        and situation.signed_in_at is not None
        and situation.now - situation.signed_in_at > timedelta(seconds=situation.max_age)
    )
    fresh = situation.logged_in_during_request
    # OIDC Core 3.1.2.1: an id_token_hint naming another person than the one signed in: say
    # so to a silent request; ask anyone else to sign in (as whoever they are: the app sees
    # the `sub` it gets).
    other = situation.hint_names_another and not fresh
    if "none" in situation.prompt:
        return Fail("login_required") if not signed_in or too_old or other else None
    if not signed_in:
        return Login()
    if ("login" in situation.prompt or other) and not fresh:
        return Login()
    if too_old and not fresh:
        return Login()
    return None


def _interact(situation: Situation, page: Step, silent_error: str) -> Step:
    """A page, unless the app asked for no interaction (`prompt=none`)."""
    return Fail(silent_error) if "none" in situation.prompt else page


def _context_step(situation: Situation) -> Step:
    """The pre-flight check: which identity context the code carries, or what to ask first."""
    if situation.denied:
        return Fail("access_denied")
    if situation.policy == "none":
        return Issue()
    links = situation.active_links
    context = situation.session_context if situation.session_context in links else None
    wants_choice = "select_account" in situation.prompt and not situation.chose_during_request
    if wants_choice and links:
        return _interact(situation, Select(), "account_selection_required")
    if context is not None:
        return Issue(context)
    if situation.policy == "optional":
        return Issue()
    if len(links) == 1:
        return Issue(links[0])
    if links:
        return _interact(situation, Select(), "account_selection_required")
    return _interact(situation, OfferLinking(), "interaction_required")
