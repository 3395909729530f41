"""Clocks the tests move instead of sleeping: the services' `utcnow`, and the rate limits'."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import ModuleType

import pytest

from iam.clock import utcnow
from iam.services import rate_limits


class Clock:
    """The time a service module sees; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def install(self, monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> Clock:
        """Replace `utcnow` in each module (they import it by name) with this clock."""
        for module in modules:
            monkeypatch.setattr(module, "utcnow", self)
        return self


#: A wall-clock second 100 s into a 600 s rate-limit window, and 40 s into a 60 s one.
RATE_WALL = 600 * 2_833_333 + 100


class RateClock:
    """The rate-limit module's clock, moved only by the test: no window ends during a test."""

    def __init__(self) -> None:
        self.wall = RATE_WALL

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return float(self.wall)


@pytest.fixture
def rate_clock(monkeypatch: pytest.MonkeyPatch) -> RateClock:
    clock = RateClock()
    monkeypatch.setattr(rate_limits, "time", clock)
    return clock
