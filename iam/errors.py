"""The errors services raise; pages and the CLI turn them into messages and status codes."""

from __future__ import annotations


class IamError(Exception):
    """Base of every expected failure; its message is safe to show to the person who caused it."""


class NotFoundError(IamError):
    """The named record does not exist."""


class ConflictError(IamError):
    """The change would break a uniqueness rule (same phone, same link...)."""


class ValidationError(IamError):
    """An input value is malformed; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ForbiddenError(IamError):
    """The caller may not do this."""


class RateLimitedError(IamError):
    """Too many attempts; `retry_after` says in how many seconds to try again, `limit` which
    limit was full (`action.key` or `action.ip`, when a rate limit said so)."""

    def __init__(self, message: str, retry_after: int, *, limit: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
