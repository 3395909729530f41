"""One source of time, so that tests can move it and the database sees naive UTC everywhere."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC, the form stored in both SQLite and PostgreSQL columns."""
    return datetime.now(UTC).replace(tzinfo=None)


def epoch(moment: datetime) -> int:
    """Seconds since 1970 for a naive-UTC datetime (JWT `iat`, `exp`, `auth_time`)."""
    return int(moment.replace(tzinfo=UTC).timestamp())
