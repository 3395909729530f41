"""iam/services/attempts.py: who is asking, and what a rerun of its unit of work counts."""

from __future__ import annotations

from iam.services.attempts import Attempt
from iam.services.rate_limits import MemoryCounter, RateLimits


def test_an_attempt_counts_its_limits_on_the_first_try_only() -> None:
    limits = RateLimits(MemoryCounter())
    attempt = Attempt("a-browser", ip="203.0.113.9", user_agent="Firefox", limits=limits)
    assert attempt.counted_on(True) is attempt
    assert attempt.counted_on(False) == Attempt("a-browser", "203.0.113.9", "Firefox", None)
