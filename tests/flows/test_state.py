"""The authorization decision, by table: (prompt, max_age, session age, fresh login) → step."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from iam.flows.state import Fail, Issue, Login, Situation, next_step

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
