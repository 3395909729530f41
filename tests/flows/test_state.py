"""The authorization decision, by table: (prompt, max_age, session age, fresh login) → step."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from iam.flows.state import POLICIES, Fail, Issue, Login, OfferLinking, Select, Situation, next_step

NOW = datetime(2026, 11, 23, 12, 0, 0)
NO_SESSION = None


def situation(prompt: str, max_age: int | None, session_age: int | None, fresh: bool) -> Situation:
    signed_in_at = None if session_age is None else NOW - timedelta(seconds=session_age)
    return Situation(frozenset(prompt.split()), max_age, signed_in_at, fresh, NOW)


@pytest.mark.parametrize(
    ("prompt", "max_age", "session_age", "fresh", "expected"),
    [
        # no prompt
        ("", None, NO_SESSION, False, Login()),
        ("", None, 30, False, Issue()),
        ("", None, 30, True, Issue()),
        # prompt=none never shows a page
        ("none", None, NO_SESSION, False, Fail("login_required")),
        ("none", None, 30, False, Issue()),
        ("none", 10, 30, False, Fail("login_required")),
        ("none", 60, 30, False, Issue()),
        # prompt=login asks again unless the person just signed in for this request
        ("login", None, 30, False, Login()),
        ("login", None, 0, True, Issue()),
        ("login", None, NO_SESSION, False, Login()),
        # max_age
        ("", 60, 30, False, Issue()),
        ("", 60, 61, False, Login()),
        ("", 0, 1, False, Login()),
        ("", 60, 61, True, Issue()),
        ("", 0, 0, False, Issue()),
        # first-party apps: consent is implied; select_account needs identities (issue 4)
        ("consent", None, 30, False, Issue()),
        ("login consent", None, 30, False, Login()),
    ],
)
def test_next_step(prompt, max_age, session_age, fresh, expected) -> None:
    assert next_step(situation(prompt, max_age, session_age, fresh)) == expected


@pytest.mark.parametrize(
    ("prompt", "session_age", "fresh", "expected"),
    [
        # an id_token_hint naming someone other than the session's person (OIDC Core 3.1.2.1)
        ("none", 30, False, Fail("login_required")),
        ("", 30, False, Login()),
        ("", 0, True, Issue()),  # whoever signed in for this request: the app sees its sub
        ("none", NO_SESSION, False, Fail("login_required")),
        ("", NO_SESSION, False, Login()),
    ],
)
def test_a_hint_naming_another_person(prompt, session_age, fresh, expected) -> None:
    hinted = replace(situation(prompt, None, session_age, fresh), hint_names_another=True)
    assert next_step(hinted) == expected


# --- the SSO pre-flight check (product.md flows 3 and 4), by table ------------------------------
#
# Axes: the app's context policy; the session's context (no context, an active link, or a stale
# link id that is no longer among the user's active links); how many active links the user has;
# `prompt`; whether the person chose a context during this request; whether they cancelled.
# The session is signed in 30 s ago (so sign-in never interferes) unless a row says otherwise.

NO_LINKS: tuple[str, ...] = ()
ONE_LINK = ("L1",)
TWO_LINKS = ("L1", "L2")
NO_CONTEXT = None
STALE = "L9"  # the session's context link was disabled or unlinked since


def preflight(
    policy: str,
    prompt: str,
    context: str | None,
    links: tuple[str, ...],
    *,
    chose: bool = False,
    denied: bool = False,
    signed_in: bool = True,
) -> Situation:
    return Situation(
        prompt=frozenset(prompt.split()),
        max_age=None,
        signed_in_at=NOW - timedelta(seconds=30) if signed_in else None,
        logged_in_during_request=False,
        now=NOW,
        policy=policy,
        session_context=context,
        active_links=links,
        chose_during_request=chose,
        denied=denied,
    )


#: (policy, prompt, session context, active links, expected step)
PREFLIGHT = [
    # -- no prompt: `none` apps never get a context and never see a page
    ("none", "", NO_CONTEXT, NO_LINKS, Issue()),
    ("none", "", STALE, NO_LINKS, Issue()),
    ("none", "", NO_CONTEXT, ONE_LINK, Issue()),
    ("none", "", "L1", ONE_LINK, Issue()),
    ("none", "", STALE, ONE_LINK, Issue()),
    ("none", "", NO_CONTEXT, TWO_LINKS, Issue()),
    ("none", "", "L2", TWO_LINKS, Issue()),
    ("none", "", STALE, TWO_LINKS, Issue()),
    # -- no prompt: `optional` apps get the session's context if it is live; never asked
    ("optional", "", NO_CONTEXT, NO_LINKS, Issue()),
    ("optional", "", STALE, NO_LINKS, Issue()),
    ("optional", "", NO_CONTEXT, ONE_LINK, Issue()),
    ("optional", "", "L1", ONE_LINK, Issue("L1")),
    ("optional", "", STALE, ONE_LINK, Issue()),
    ("optional", "", NO_CONTEXT, TWO_LINKS, Issue()),
    ("optional", "", "L2", TWO_LINKS, Issue("L2")),
    ("optional", "", STALE, TWO_LINKS, Issue()),
    # -- no prompt: `required` apps: the session's context, else the only link, else ask
    ("required", "", NO_CONTEXT, NO_LINKS, OfferLinking()),
    ("required", "", STALE, NO_LINKS, OfferLinking()),
    ("required", "", NO_CONTEXT, ONE_LINK, Issue("L1")),
    ("required", "", "L1", ONE_LINK, Issue("L1")),
    ("required", "", STALE, ONE_LINK, Issue("L1")),
    ("required", "", NO_CONTEXT, TWO_LINKS, Select()),
    ("required", "", "L2", TWO_LINKS, Issue("L2")),
    ("required", "", STALE, TWO_LINKS, Select()),
    # -- prompt=select_account: the selector whenever there is something to select, except for
    #    `none` apps (they take no context); with no link at all, as without the prompt
    ("none", "select_account", NO_CONTEXT, TWO_LINKS, Issue()),
    ("none", "select_account", "L2", TWO_LINKS, Issue()),
    ("none", "select_account", NO_CONTEXT, NO_LINKS, Issue()),
    ("optional", "select_account", NO_CONTEXT, NO_LINKS, Issue()),
    ("optional", "select_account", STALE, NO_LINKS, Issue()),
    ("optional", "select_account", NO_CONTEXT, ONE_LINK, Select()),
    ("optional", "select_account", "L1", ONE_LINK, Select()),
    ("optional", "select_account", NO_CONTEXT, TWO_LINKS, Select()),
    ("optional", "select_account", "L2", TWO_LINKS, Select()),
    ("required", "select_account", NO_CONTEXT, NO_LINKS, OfferLinking()),
    ("required", "select_account", STALE, NO_LINKS, OfferLinking()),
    ("required", "select_account", NO_CONTEXT, ONE_LINK, Select()),
    ("required", "select_account", "L1", ONE_LINK, Select()),
    ("required", "select_account", STALE, ONE_LINK, Select()),
    ("required", "select_account", NO_CONTEXT, TWO_LINKS, Select()),
    ("required", "select_account", "L2", TWO_LINKS, Select()),
    ("required", "select_account", STALE, TWO_LINKS, Select()),
    # -- prompt=none: never a page; what would have been one is the matching OIDC error
    ("none", "none", NO_CONTEXT, TWO_LINKS, Issue()),
    ("none", "none", "L2", TWO_LINKS, Issue()),
    ("optional", "none", NO_CONTEXT, NO_LINKS, Issue()),
    ("optional", "none", NO_CONTEXT, TWO_LINKS, Issue()),
    ("optional", "none", "L2", TWO_LINKS, Issue("L2")),
    ("optional", "none", STALE, TWO_LINKS, Issue()),
    ("required", "none", NO_CONTEXT, NO_LINKS, Fail("interaction_required")),
    ("required", "none", STALE, NO_LINKS, Fail("interaction_required")),
    ("required", "none", NO_CONTEXT, ONE_LINK, Issue("L1")),
    ("required", "none", "L1", ONE_LINK, Issue("L1")),
    ("required", "none", STALE, ONE_LINK, Issue("L1")),
    ("required", "none", NO_CONTEXT, TWO_LINKS, Fail("account_selection_required")),
    ("required", "none", "L2", TWO_LINKS, Issue("L2")),
    ("required", "none", STALE, TWO_LINKS, Fail("account_selection_required")),
    # -- prompt=none with select_account (OIDC forbids none with another value; Authlib refuses
    #    it with invalid_request before this runs): no page all the same
    ("none", "none select_account", NO_CONTEXT, TWO_LINKS, Issue()),
    ("optional", "none select_account", NO_CONTEXT, NO_LINKS, Issue()),
    ("optional", "none select_account", "L2", TWO_LINKS, Fail("account_selection_required")),
    ("required", "none select_account", NO_CONTEXT, NO_LINKS, Fail("interaction_required")),
    ("required", "none select_account", "L1", ONE_LINK, Fail("account_selection_required")),
    ("required", "none select_account", "L2", TWO_LINKS, Fail("account_selection_required")),
    # -- prompt=login: sign in again first (not fresh here), whatever the context
    ("none", "login", NO_CONTEXT, TWO_LINKS, Login()),
    ("optional", "login", "L2", TWO_LINKS, Login()),
    ("required", "login", "L2", TWO_LINKS, Login()),
    ("required", "login select_account", NO_CONTEXT, TWO_LINKS, Login()),
    # -- prompt=consent is implied for first-party apps: as without a prompt
    ("required", "consent", NO_CONTEXT, TWO_LINKS, Select()),
    ("required", "consent", "L2", TWO_LINKS, Issue("L2")),
]


@pytest.mark.parametrize(
    ("policy", "prompt", "context", "links", "expected"),
    PREFLIGHT,
    ids=[f"{p}|prompt={pr or '-'}|ctx={c}|links={len(ls)}" for p, pr, c, ls, _ in PREFLIGHT],
)
def test_preflight(policy, prompt, context, links, expected) -> None:
    assert next_step(preflight(policy, prompt, context, links)) == expected


#: After the person chose at the selector during this request (their choice is the session's
#: context now, or went stale meanwhile): (policy, prompt, context, links, expected)
AFTER_CHOOSING = [
    ("required", "select_account", "L2", TWO_LINKS, Issue("L2")),  # asked once, not again
    ("required", "select_account", "L1", ONE_LINK, Issue("L1")),
    ("required", "select_account", STALE, TWO_LINKS, Select()),  # the choice died: ask again
    ("required", "select_account", STALE, ONE_LINK, Issue("L1")),
    ("required", "select_account", NO_CONTEXT, NO_LINKS, OfferLinking()),
    ("required", "", "L2", TWO_LINKS, Issue("L2")),
    ("required", "", STALE, TWO_LINKS, Select()),
    ("optional", "select_account", "L2", TWO_LINKS, Issue("L2")),
    ("optional", "select_account", STALE, TWO_LINKS, Issue()),
    ("none", "select_account", "L2", TWO_LINKS, Issue()),
]


@pytest.mark.parametrize(
    ("policy", "prompt", "context", "links", "expected"),
    AFTER_CHOOSING,
    ids=[f"{p}|prompt={pr or '-'}|ctx={c}|links={len(ls)}" for p, pr, c, ls, _ in AFTER_CHOOSING],
)
def test_preflight_after_choosing(policy, prompt, context, links, expected) -> None:
    assert next_step(preflight(policy, prompt, context, links, chose=True)) == expected


#: The person cancelled at the selector or the linking offer: (policy, prompt, context, links)
CANCELLED = [
    ("required", "", NO_CONTEXT, TWO_LINKS),
    ("required", "", NO_CONTEXT, NO_LINKS),  # cancelled at the linking offer
    ("required", "", "L2", TWO_LINKS),  # even a usable context is not issued any more
    ("required", "select_account", "L2", TWO_LINKS),
    ("optional", "select_account", NO_CONTEXT, TWO_LINKS),
    ("none", "", NO_CONTEXT, NO_LINKS),
]


@pytest.mark.parametrize(("policy", "prompt", "context", "links"), CANCELLED)
@pytest.mark.parametrize("chose", [False, True])
def test_a_cancelled_request_is_access_denied(policy, prompt, context, links, chose) -> None:
    situation = preflight(policy, prompt, context, links, chose=chose, denied=True)
    assert next_step(situation) == Fail("access_denied")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("links", [NO_LINKS, TWO_LINKS])
def test_sign_in_comes_before_the_context(policy: str, links: tuple[str, ...]) -> None:
    assert next_step(preflight(policy, "", NO_CONTEXT, links, signed_in=False)) == Login()
    assert next_step(preflight(policy, "select_account", "L2", links, signed_in=False)) == Login()
    signed_out_silent = preflight(policy, "none", NO_CONTEXT, links, signed_in=False)
    assert next_step(signed_out_silent) == Fail("login_required")


# Every combination of the axes, for what must hold whatever the row.
ALL_PROMPTS = ["", "login", "consent", "select_account", "none", "none select_account"]
ALL_CONTEXTS = [
    (NO_CONTEXT, NO_LINKS),
    (STALE, NO_LINKS),
    (NO_CONTEXT, ONE_LINK),
    ("L1", ONE_LINK),
    (STALE, ONE_LINK),
    (NO_CONTEXT, TWO_LINKS),
    ("L1", TWO_LINKS),
    ("L2", TWO_LINKS),
    (STALE, TWO_LINKS),
]


def every_situation() -> list[Situation]:
    return [
        preflight(policy, prompt, context, links, chose=chose, denied=denied, signed_in=signed_in)
        for policy in POLICIES
        for prompt in ALL_PROMPTS
        for context, links in ALL_CONTEXTS
        for chose in (False, True)
        for denied in (False, True)
        for signed_in in (False, True)
    ]


def test_invariants_over_every_combination() -> None:
    situations = every_situation()
    assert len(situations) == 3 * 6 * 9 * 2 * 2 * 2
    for situation in situations:
        step = next_step(situation)
        silent = "none" in situation.prompt
        where = f"{situation} -> {step}"
        if silent:  # prompt=none never shows a page
            assert isinstance(step, Issue | Fail), where
        if isinstance(step, Issue):
            # only a live link of this user, and never a context for a `none` app
            assert step.context_link_id in (None, *situation.active_links), where
            if situation.policy == "none":
                assert step.context_link_id is None, where
            if situation.policy == "required":
                assert step.context_link_id is not None, where
            assert not situation.denied, where
        if isinstance(step, Select):  # the selector only with something to select, never for
            assert situation.active_links and situation.policy != "none", where  # `none` apps
        if isinstance(step, OfferLinking):
            assert not situation.active_links and situation.policy == "required", where
        signed_in = situation.signed_in_at is not None
        if signed_in and situation.denied and "login" not in situation.prompt:
            assert step == Fail("access_denied"), where  # a cancellation is final
