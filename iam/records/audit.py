"""The audit trail as the admin API shows it: events, newest first, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from iam.db import models
from iam.records.base import FROM_TEXT, Absent, Body, Record, Text, Timestamp
from iam.services import audit

#: Events a page holds unless the caller asks for fewer or more.
PAGE_SIZE = 50


class AuditEvent(Record):
    """One security-relevant event."""

    id: int = Field(ge=1)
    occurred_at: Timestamp
    event: str = Field(examples=["login.succeeded"])
    outcome: str = Field(examples=["success", "failure"])
    actor: str | None = Field(
        description="who did it when not the user: admin:<username>, client:<client_id>, cli"
    )
    user_id: str | None
    client_id: str | None
    ip: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: models.AuditEvent) -> AuditEvent:
        return cls.from_row(event, detail=dict(event.detail or {}))


class AuditPage(Record):
    """A page of the trail and the cursor of the next (older) one."""

    events: list[AuditEvent]
    next: int | None = Field(
        ge=1, description="pass as `before` for the next (older) page; null on the last"
    )

    @classmethod
    def of(cls, page: audit.AuditPage) -> AuditPage:
        return cls(events=[AuditEvent.of(event) for event in page.events], next=page.next_before)


# --- what a search may ask --------------------------------------------------------------------


def parse_moment(raw: str, zone: tzinfo | None = None) -> datetime:
    """ISO 8601 (`2026-05-01T08:00:00Z`, an offset, or none: then it is in `zone`, UTC unless
    given; the console's datetime-local fields send none and mean the console's zone) as naive
    UTC, how times are stored. An instant past the ends of the calendar (year 1 at +01:00) is
    clamped to that end. `ValueError` otherwise."""
    try:
        value = datetime.fromisoformat(raw.strip().upper())
    except ValueError:
        raise ValueError("must be an ISO 8601 date and time (2026-05-01T08:00:00Z).") from None
    if value.tzinfo is None:
        if zone is None:
            return value
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return datetime.min if value.year == datetime.min.year else datetime.max


def _blank_is_absent(value: Any) -> Any:
    """An empty filter (a form's empty field) filters nothing."""
    return None if value == "" else value


def _moment(value: Any) -> Any:
    return parse_moment(value) if isinstance(value, str) else value


#: Clears an empty filter.
BLANK_IS_ABSENT = BeforeValidator(_blank_is_absent)


#: A text filter no longer than its column (a longer one could match nothing): a user id, or
#: an app's id or an event's name.
UserIdFilter = Annotated[Annotated[Text, Field(max_length=36)] | Absent, BLANK_IS_ABSENT]
NameFilter = Annotated[Annotated[Text, Field(max_length=64)] | Absent, BLANK_IS_ABSENT]

Moment = Annotated[
    datetime,
    BeforeValidator(_moment),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class AuditQuery(Body):
    """The trail's filters and paging (query parameters)."""

    user_id: Annotated[UserIdFilter, Field(description="events about this user")] = None
    client_id: Annotated[NameFilter, Field(description="events about this app")] = None
    event: Annotated[
        NameFilter, Field(description="an event name, or a prefix ending in a dot (`login.`)")
    ] = None
    since: Annotated[
        Moment | Absent, Field(description="events at or after this time (no offset: UTC)")
    ] = None
    until: Annotated[
        Moment | Absent, Field(description="events before this time (no offset: UTC)")
    ] = None
    limit: Annotated[int, Field(ge=1, le=audit.MAX_PAGE), FROM_TEXT] = PAGE_SIZE
    before: Annotated[
        Annotated[int, Field(ge=1, le=audit.MAX_ID), FROM_TEXT] | Absent,
        Field(description="the `next` of the previous page"),
    ] = None
