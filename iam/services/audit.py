"""The audit trail: one append-only row per security-relevant event, in the caller's transaction."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from iam.db.fastpath import INSERT_AUDIT_EVENT, change
from iam.db.models import AuditEvent, Client, User, WeComCorp
from iam.errors import ValidationError
from iam.services.phones import normalize_phone

log = logging.getLogger("iam.audit")


def record(
    connection: Connection,
    event: str,
    *,
    outcome: str = "success",
    user_id: str | None = None,
    client_id: str | None = None,
    actor: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Write an event in the transaction of `connection` (a use case's ORM session gives its
    own: `db.connection()`): with the change it describes, or not at all. (A plain INSERT, not
    an ORM object: the trail is append-only and this is on the hot path, which has no session;
    it flushes nothing, so the caller's own errors surface where the caller expects them.)"""
    change(
        connection,
        INSERT_AUDIT_EVENT,
        {
            "event": event,
            "outcome": outcome,
            "user_id": user_id,
            "client_id": client_id,
            "actor": actor,
            "ip": ip,
            "detail": detail,
        },
    )
    log.info("%s %s user=%s client=%s", event, outcome, user_id, client_id)


#: A page of the trail holds at most this many events.
MAX_PAGE = 200
#: The largest id a cursor may name (a signed 64-bit integer, PostgreSQL's BIGINT).
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class AuditPage:
    """Events newest first, and the cursor of the next (older) page: None on the last one."""

    events: list[AuditEvent]
    next_before: int | None


def search(
    db: Session,
    *,
    user_id: str | None = None,
    client_id: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    person: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> AuditPage:
    """Events newest first (by id, which only grows), paged by keyset: the next page is the
    events with an id below `next_before`, so paging stays exact while new events arrive.

    `event` is an exact name, or a prefix ending in a dot (`login.`). `since` is inclusive,
    `until` exclusive (naive UTC). `person` is what an admin types to find someone: a part of
    their name, their phone number as people write it, or its last digits (see `people`).
    The order is the primary key's and every filter has an index (`client_id` with the id, for
    its pages in order; a time range is made an id range first, see `id_range`), so a page is
    `limit + 1` rows from an index scan, never a sort of the whole trail."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("limit", f"limit must be between 1 and {MAX_PAGE}.")
    filters = Filters(user_id, client_id, event, since, until, person)
    return page_of(db, filters, limit=limit, before=before)


@dataclass(frozen=True)
class Filters:
    """What a search keeps (each None: no filter on it)."""

    user_id: str | None = None
    client_id: str | None = None
    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    person: str | None = None


def page_of(db: Session, filters: Filters, *, limit: int, before: int | None) -> AuditPage:
    """`limit` events below `before` that pass `filters`, newest first: a page of `search`, or
    a batch of the CSV export (larger than a page, and never all of the trail at once).

    A time range is first made an id range (`id_range`), so its page is read backwards along
    the primary key (or the person's, app's or event's index) from the range's end, not from
    the newest event; the times themselves stay conditions of the page, which decide."""
    if before is not None and not 1 <= before <= MAX_ID:
        raise ValidationError("before", "before must be an event id from a previous page.")
    texts = (filters.user_id, filters.client_id, filters.event, filters.person)
    if any(text is not None and "\x00" in text for text in texts):
        return AuditPage([], None)  # matches nothing, and PostgreSQL refuses NUL in text
    ids = id_range(db, filters.since, filters.until)
    if ids is None:
        return AuditPage([], None)
    above, below = ids
    if before is not None:
        below = before if below is None else min(below, before)
    if above is not None and below is not None and below - above <= 1:
        return AuditPage([], None)  # no id between them: no query
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    for condition in _conditions(filters):
        statement = statement.where(condition)
    if above is not None:
        statement = statement.where(AuditEvent.id > above)
    if below is not None:
        statement = statement.where(AuditEvent.id < below)
    events = list(db.scalars(statement))
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(events, events[-1].id if more else None)


#: How far apart in time two events may have been written in the opposite order of their ids.
#: `record` reads the clock (`occurred_at`'s default) as it builds its INSERT, and the database
#: gives the id as it runs it, so an event may get a lower id than one that read the clock a
#: little earlier: by the time between the two, microseconds on one server. A minute also
#: covers the clocks of several servers writing one trail, if they agree to within it.
CLOCK_MARGIN = timedelta(minutes=1)


def id_range(
    db: Session, since: datetime | None, until: datetime | None
) -> tuple[int | None, int | None] | None:
    """Ids (`above`, `below`), either None for no bound, such that every event with `since` <=
    occurred_at < `until` has `above` < id < `below`; None when no event can (`until` is not
    after `since`). Two lookups on the occurred_at index, one row each: the last event more
    than `CLOCK_MARGIN` before `since`, and the first one at least `CLOCK_MARGIN` after `until`.

    This relies on ids growing with `occurred_at` to within the margin, as `record` writes them
    (see `CLOCK_MARGIN`): an event of the range read the clock more than the margin after the
    first of those two and before the second, so it got its id after the one and before the
    other. The ids only narrow the search. The page keeps the exact conditions on
    `occurred_at`, so an event between the bounds but outside the range (one of the margin's)
    is never shown. An event written out of order by more than the margin (a server's clock
    set back, or a row given an `occurred_at` of the past) could be missed by a time range. (The
    nearest events inside the margin instead, `ORDER BY occurred_at LIMIT 1` at `since -
    margin`, would not do: an event of the range may have an id below that one's.)"""
    if since is not None and until is not None and since >= until:
        return None
    above = below = None
    if since is not None and since - datetime.min > CLOCK_MARGIN:  # else no room: open
        above = db.scalar(
            select(AuditEvent.id)
            .where(AuditEvent.occurred_at < since - CLOCK_MARGIN)
            .order_by(AuditEvent.occurred_at.desc())
            .limit(1)
        )
    if until is not None and datetime.max - until > CLOCK_MARGIN:
        below = db.scalar(
            select(AuditEvent.id)
            .where(AuditEvent.occurred_at >= until + CLOCK_MARGIN)
            .order_by(AuditEvent.occurred_at)
            .limit(1)
        )
    return above, below


def _conditions(filters: Filters) -> Iterable[ColumnElement[bool]]:
    if filters.user_id is not None:
        yield AuditEvent.user_id == filters.user_id
    if filters.client_id is not None:
        yield AuditEvent.client_id == filters.client_id
    if filters.event is not None:
        if filters.event.endswith("."):
            # LIKE 'login.%' (escaped): a prefix, whatever the collation; an index range scan
            # where the collation allows one (C, or a pattern_ops index).
            yield AuditEvent.event.startswith(filters.event, autoescape=True)
        else:
            yield AuditEvent.event == filters.event
    if filters.since is not None:
        yield AuditEvent.occurred_at >= filters.since
    if filters.until is not None:
        yield AuditEvent.occurred_at < filters.until
    if filters.person is not None:
        yield AuditEvent.user_id.in_(people(filters.person))


#: What people put between the digits of a phone number.
_PHONE_NOISE = re.compile(r"[\s\-()+.]")
#: The fewest trailing digits that find a phone number by its end.
LAST_DIGITS = 4


def people(typed: str) -> Select[Any]:
    """The ids of the people an admin means by `typed`: whose name contains it (ignoring case),
    whose phone is it (`138 0013 8000`, `+86...`, full-width digits: as the sign-in reads a
    number), or whose phone ends with it (at least `LAST_DIGITS` digits)."""
    text = typed.strip()
    found: list[ColumnElement[bool]] = [
        func.lower(User.name).contains(text.lower(), autoescape=True)
    ]
    with suppress(ValidationError):  # not a whole number: perhaps its last digits
        found.append(User.phone == normalize_phone(text))
    digits = _PHONE_NOISE.sub("", unicodedata.normalize("NFKC", text))
    if digits.isascii() and digits.isdigit() and len(digits) >= LAST_DIGITS:
        found.append(User.phone.endswith(digits, autoescape=True))
    return select(User.id).where(or_(*found))


@dataclass(frozen=True)
class Names:
    """The names of the people, apps and corporations some events are about, by id; an id
    missing here is of one deleted since (or never known)."""

    users: dict[str, str] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)
    corps: dict[str, str] = field(default_factory=dict)


def names_of(db: Session, events: Iterable[AuditEvent]) -> Names:
    """One query per kind, whatever the number of events (a page shows 50, an export batch
    more): never one per row."""
    events = list(events)
    user_ids = {event.user_id for event in events if event.user_id}
    client_ids = {event.client_id for event in events if event.client_id}
    corp_ids = {corp for event in events if isinstance(corp := corp_of(event), str)}
    return Names(
        users=_named(db, User.id, User.name, user_ids),
        clients=_named(db, Client.client_id, Client.name, client_ids),
        corps=_named(db, WeComCorp.corp_id, WeComCorp.name, corp_ids),
    )


def _named(
    db: Session, key: InstrumentedAttribute[str], name: InstrumentedAttribute[str], ids: set[str]
) -> dict[str, str]:
    """id -> name of the rows with these ids, in one query (none for no ids)."""
    if not ids:
        return {}
    return {
        row_id: row_name for row_id, row_name in db.execute(select(key, name).where(key.in_(ids)))
    }


def corp_of(event: AuditEvent) -> str | None:
    """The corporation an event is about, when its detail names one."""
    corp = (event.detail or {}).get("corp_id")
    return corp if isinstance(corp, str) and corp else None


@dataclass(frozen=True)
class NamedPage:
    """A page of events and the names they are about: what the console shows."""

    events: list[AuditEvent]
    next_before: int | None
    names: Names


def named_page(db: Session, filters: Filters, limit: int, before: int | None) -> NamedPage:
    """`page_of` and `names_of` in one unit: a page of the console or a batch of its export."""
    found = page_of(db, filters, limit=limit, before=before)
    return NamedPage(found.events, found.next_before, names_of(db, found.events))
