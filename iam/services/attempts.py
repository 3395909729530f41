"""Who is asking: the browser, address and user agent behind one sign-in attempt."""

from __future__ import annotations

from dataclasses import dataclass, replace

from iam.services.rate_limits import RateLimits


@dataclass(frozen=True)
class Attempt:
    """One attempt to sign in (ask for a code, check it, bind an identity, open a session), as
    the page that received it saw it.

    These travel together because every step of a sign-in needs the same few of them: codes and
    pending bindings belong to the browser that asked (keyed on the digest of its id), limits
    count per number and browser and per address, the audit trail names the address, and a new
    session keeps the address and user agent it was opened from. `limits`: the rate limits the
    attempt counts against (None: nothing is counted)."""

    browser: str
    ip: str | None = None
    user_agent: str | None = None
    limits: RateLimits | None = None

    def counted_on(self, first_try: bool) -> Attempt:
        """This attempt in a try of its unit of work: its limits count on the first try only
        (a rerun after a lost race is the same attempt, already counted)."""
        return self if first_try else replace(self, limits=None)
